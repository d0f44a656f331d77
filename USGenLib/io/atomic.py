"""Atomic writes: every output goes to a hidden temporary file beside it, then is renamed.

A failure (bad input discovered late, a full disk, Ctrl-C) leaves nothing at the final path.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from USGenLib.errors import UsgenInputError


def check_output_folder(path: str | Path) -> Path:
    """Raise UsgenInputError unless the folder that will hold ``path`` exists and is writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UsgenInputError(parent, "output folder does not exist")
    if not parent.is_dir():
        raise UsgenInputError(parent, "output folder is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsgenInputError(parent, "output folder is not writable")
    return parent


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the same file name ending as ``path``; rename on success.

    The temporary name keeps the full ending (``.seq.nrrd``, ``.mp4``) because several writers
    choose their format from it.
    """
    path = Path(path)
    parent = check_output_folder(path)
    tmp = parent / f".usgen-{uuid.uuid4().hex[:8]}-{path.name}"
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"writer produced no file at {tmp}")
        os.replace(tmp, path)
    except PermissionError as err:
        raise UsgenInputError(parent, f"output folder is not writable ({err.strerror})") from err
    except OSError as err:  # a vanished folder, a full disk: still one line, nothing left behind
        raise UsgenInputError(path, f"cannot be written ({err.strerror or err})") from err
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
