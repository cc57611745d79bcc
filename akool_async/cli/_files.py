"""A batch's files in its output folder: their names, the partial files a killed run leaves, and
the check of recorded files against their sha256. Blocking functions, for worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import re
import secrets
import stat
from collections.abc import Sequence
from typing import Final

from akool_async._paths import image_suffix, safe_stem

from ._journal import OutputRecord, TaskRecord

__all__ = [
    "PART_FILE",
    "broken_outputs",
    "file_name",
    "part_file_for",
    "remove_part_files",
]

# A file being written is hidden beside its target as ``.<target name>.<12 hex digits>.part``,
# then renamed into place. That is the rule of akool_async/_download.py (its ``_PartFile``, which
# has no public name for it) for result images; `part_file_for` follows it for the manifest. One
# pattern thus finds what a killed run left of both. Change the three together.
PART_FILE: Final = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")
_PART_TOKEN_BYTES: Final = 6  # 12 hex digits
# A stem is a row number, a prompt's slug (40 characters at most), a generate's time stamp, the
# buttons of follow-ups and a number that keeps it unique: well under this, and far under the 255
# bytes a file name may have once ``_q1.jpeg`` and a part file's decoration are added.
_MAX_STEM_CHARS: Final = 200
_HASH_CHUNK: Final = 1 << 20


def part_file_for(target: pathlib.Path) -> pathlib.Path:
    """A fresh hidden name beside ``target`` to write it under before renaming it into place."""
    return target.with_name(f".{target.name}.{secrets.token_hex(_PART_TOKEN_BYTES)}.part")


def file_name(record: TaskRecord, name: str, url: str | None) -> str:
    """The file a task's output ``name`` (``grid``, ``q1``..``q4``, ``image``) is saved as.

    Built from the task's stem (the row's, never an id Akool sent) and a suffix from the
    allow-list of `akool_async._paths`.

    Raises:
        InvalidInput: The journal holds a stem that cannot be a file name.
    """
    stem = safe_stem(
        record.stem, what="the journal's file stem", from_server=False, max_chars=_MAX_STEM_CHARS
    )
    if name == "image":
        return f"{stem}{image_suffix(url)}"
    return f"{stem}_{name}{image_suffix(url)}"


def remove_part_files(out: pathlib.Path) -> None:
    """Delete the hidden partial files a killed run's downloads and manifest left behind."""
    for entry in out.iterdir():
        if PART_FILE.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def broken_outputs(
    out: pathlib.Path, outputs: Sequence[OutputRecord]
) -> list[tuple[OutputRecord, str]]:
    """The recorded files that are missing or differ from their sha256, each with why.

    The journal is read as untrusted: a recorded name that is not one plain file name, or a
    path that is not a regular file (a link, a FIFO, a device), counts as broken and is fetched
    again through the checked writer, never opened or hashed where it leads.
    """
    broken: list[tuple[OutputRecord, str]] = []
    for output in outputs:
        name = output.file
        if pathlib.PurePath(name).name != name or name in {"", ".", ".."} or "\\" in name:
            broken.append((output, "is not a plain file name in the output folder"))
            continue
        path = out / name
        try:
            status = path.lstat()
        except FileNotFoundError:
            broken.append((output, "is missing"))
            continue
        if not stat.S_ISREG(status.st_mode):
            broken.append((output, "is not a regular file"))
            continue
        if status.st_size != output.size or _sha256(path) != output.sha256:
            broken.append((output, "does not match its recorded sha256"))
    return broken


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
