"""The names of the files the SDK and the command line write: checked parts, kept in their folder.

A result is saved under its job id and a suffix, and both reach us in Akool's answers (the id in
``_id``, the suffix in the result URL). Neither is trusted as a path: an id must be a plain stem
(ASCII letters, digits, ``-`` and ``_``, no Windows device name), a suffix one of the image types
the download recognises by their bytes, and the file must resolve directly inside the folder it
is saved in. A bad part raises before anything is created or written: `InvalidResponse` when it
came from Akool, `InvalidInput` when it came from the caller or the local file system.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from ._errors import InvalidInput, InvalidResponse

__all__ = [
    "DEFAULT_SUFFIX",
    "IMAGE_SUFFIXES",
    "MAX_ID_CHARS",
    "files_in",
    "image_suffix",
    "make_folder",
    "names_folder",
    "safe_stem",
]

MAX_ID_CHARS: Final = 64
"""The longest job id used as a file name stem (Akool's ids are 24 hex digits)."""
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".gif")
"""The suffixes of the image types `_download` recognises by their first bytes."""
DEFAULT_SUFFIX: Final = ".png"
"""The suffix of a result whose URL shows none of `IMAGE_SUFFIXES` (Akool's results are PNGs)."""

_STEM: Final = re.compile(r"[A-Za-z0-9_-]+")
# Names Windows gives to devices, whatever the case and whatever follows a dot.
_WINDOWS_DEVICES: Final = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"{port}{number}" for port in ("com", "lpt") for number in range(10)}
)
_SEPARATORS: Final[tuple[str, ...]] = ("/", os.sep, os.altsep or "/")
_SHOWN_CHARS: Final = 60
_NOT_IN_NAMES: Final = ("/", "\\", ":", "\0")  # separators on any system, drives and streams


def safe_stem(value: object, *, what: str, from_server: bool, max_chars: int = MAX_ID_CHARS) -> str:
    """``value``, if it can be a file name stem on every system; else a typed error.

    Args:
        value: The would-be stem, such as a job id.
        what: What it is, for the message ("job id").
        from_server: Whether Akool sent it (`InvalidResponse`) or the caller gave it
            (`InvalidInput`).
        max_chars: The longest stem accepted.

    Raises:
        InvalidResponse: ``from_server`` and the value is not a safe stem.
        InvalidInput: Not ``from_server`` and the value is not a safe stem.
    """
    if (
        isinstance(value, str)
        and len(value) <= max_chars
        and _STEM.fullmatch(value) is not None
        and value.casefold() not in _WINDOWS_DEVICES
    ):
        return value
    rule = (
        f"1 to {max_chars} ASCII letters, digits, '-' or '_', and no Windows device name "
        "(CON, PRN, AUX, NUL, COM0-9, LPT0-9)"
    )
    if from_server:
        raise InvalidResponse(
            f"Akool sent the {what} {_shown(value)}, which cannot be used in a file name (it "
            f"must be {rule}); nothing was written"
        )
    raise InvalidInput(f"{what} {_shown(value)} cannot be used in a file name: it must be {rule}")


def image_suffix(url: str | None) -> str:
    """The suffix a result URL's path ends with, if it is an image's; `DEFAULT_SUFFIX` if not."""
    if not url:
        return DEFAULT_SUFFIX
    try:
        path = urlsplit(url).path
    except ValueError:  # an unparsable URL (a broken IPv6 host) shows no suffix
        return DEFAULT_SUFFIX
    suffix = posixpath.splitext(path)[1].lower()
    return suffix if suffix in IMAGE_SUFFIXES else DEFAULT_SUFFIX


async def names_folder(dest: str | os.PathLike[str]) -> bool:
    """Whether ``dest`` names a folder to save into, rather than the file to write.

    The rule, in order: a path that ends with a separator (``"out/"``) is a folder; so is an
    existing folder; any other existing path is a file; a path whose last part has a suffix
    (``"fox.png"``, ``"v1.2"``) is a file; anything else (``"out"``, ``Path("results")``) is a
    folder. A folder that does not exist yet is created by the download.
    """
    text = os.fspath(dest)
    if text.endswith(_SEPARATORS):
        return True
    # One trip to a worker thread, as all file-system access in async code takes.
    return await anyio.to_thread.run_sync(_names_folder, pathlib.Path(text))


async def files_in(folder: str | os.PathLike[str], names: Sequence[str]) -> list[pathlib.Path]:
    """Create ``folder`` if needed and return ``folder / name`` for each name, each proven inside.

    Raises:
        InvalidInput: ``folder`` cannot be created or is a file; a name is not one plain
            file name; or a symbolic link of that name leads outside ``folder``.
    """
    return await anyio.to_thread.run_sync(_files_in, pathlib.Path(folder), tuple(names))


async def make_folder(folder: str | os.PathLike[str]) -> None:
    """Create ``folder`` and its parents, if missing.

    Raises:
        InvalidInput: It cannot be created (a file is in the way, no permission, ...).
    """
    await anyio.to_thread.run_sync(_make_folder, pathlib.Path(folder))


def _names_folder(path: pathlib.Path) -> bool:
    if path.is_dir():
        return True
    if path.is_symlink() or path.exists():
        return False
    return not path.suffix


def _files_in(folder: pathlib.Path, names: tuple[str, ...]) -> list[pathlib.Path]:
    for name in names:  # every name is checked before the folder is made
        if name in {"", ".", ".."} or any(char in name for char in _NOT_IN_NAMES):
            raise InvalidInput(
                f"{name!r} is not a plain file name: it must not contain a path separator, "
                "':' or NUL, nor be '.' or '..'"
            )
    _make_folder(folder)
    root = folder.resolve()
    paths: list[pathlib.Path] = []
    for name in names:
        try:
            # strict=False: the file usually does not exist yet; a symbolic link is followed.
            target = (root / name).resolve()
        except (OSError, RuntimeError) as error:  # a symbolic link loop, say
            raise InvalidInput(f"{str(folder / name)!r} cannot be resolved: {error}") from error
        if not target.is_relative_to(root):
            raise InvalidInput(
                f"{str(folder / name)!r} is a symbolic link that leads outside {str(folder)!r} "
                f"(to {str(target)!r}): remove it, or save into another folder"
            )
        paths.append(folder / name)
    return paths


def _make_folder(folder: pathlib.Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise InvalidInput(
            f"{str(folder)!r} cannot be a folder: a file is in the way ({error.strerror}); "
            "choose another folder or pass a file path"
        ) from error
    except OSError as error:
        raise InvalidInput(
            f"the folder {str(folder)!r} cannot be created: {error.strerror or error}"
        ) from error


def _shown(value: object) -> str:
    """``value`` for a message: its repr, cut short; an id can be any length."""
    if not isinstance(value, str):
        return f"of type {type(value).__name__}"
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"
