"""A batch's files in its output folder: their names, the partial files a killed run leaves, and
the check of recorded files against their sha256. Blocking functions, for worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import re
import secrets
from collections.abc import Sequence
from typing import Final

from ._journal import OutputRecord, TaskRecord

__all__ = [
    "PART_FILE",
    "broken_outputs",
    "file_name",
    "part_file_for",
    "remove_part_files",
    "suffix_of",
]

# A file being written is hidden beside its target as ``.<target name>.<12 hex digits>.part``,
# then renamed into place. That is the rule of akool_async/_download.py (its ``_PartFile``, which
# has no public name for it) for result images; `part_file_for` follows it for the manifest. One
# pattern thus finds what a killed run left of both. Change the three together.
PART_FILE: Final = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")
_PART_TOKEN_BYTES: Final = 6  # 12 hex digits
_IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
_HASH_CHUNK: Final = 1 << 20


def part_file_for(target: pathlib.Path) -> pathlib.Path:
    """A fresh hidden name beside ``target`` to write it under before renaming it into place."""
    return target.with_name(f".{target.name}.{secrets.token_hex(_PART_TOKEN_BYTES)}.part")


def suffix_of(url: str | None) -> str:
    """The image file suffix a URL's path shows, ``.png`` when it shows none."""
    if url is None:
        return ".png"
    path = url.split("?", 1)[0].split("#", 1)[0]
    suffix = pathlib.PurePosixPath(path).suffix.lower()
    return suffix if suffix in _IMAGE_SUFFIXES else ".png"


def file_name(record: TaskRecord, name: str, url: str | None) -> str:
    """The file a task's output ``name`` (``grid``, ``q1``..``q4``, ``image``) is saved as."""
    if name == "image":
        return f"{record.stem}{suffix_of(url)}"
    return f"{record.stem}_{name}{suffix_of(url)}"


def remove_part_files(out: pathlib.Path) -> None:
    """Delete the hidden partial files a killed run's downloads and manifest left behind."""
    for entry in out.iterdir():
        if PART_FILE.match(entry.name) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def broken_outputs(
    out: pathlib.Path, outputs: Sequence[OutputRecord]
) -> list[tuple[OutputRecord, str]]:
    """The recorded files that are missing or differ from their sha256, each with why."""
    broken: list[tuple[OutputRecord, str]] = []
    for output in outputs:
        path = out / output.file
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            broken.append((output, "is missing"))
            continue
        if size != output.size or _sha256(path) != output.sha256:
            broken.append((output, "does not match its recorded sha256"))
    return broken


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
