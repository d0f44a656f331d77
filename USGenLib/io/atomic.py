"""Atomic writes: every output goes to a hidden temporary beside it, then is renamed into place.

A failure (bad input discovered late, a full disk, Ctrl-C, SIGTERM) leaves nothing at the final
path and removes the temporary. A job killed outright (SIGKILL, power loss) cannot clean up, so
temporary names carry the writer's process ID, ``.usgen-<pid>-<random>-<name>``: the next USGen
write into the same folder removes the temporaries whose writer no longer runs.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from USGenLib.errors import UsgenInputError
from USGenLib.limits import check_output_name

_TEMP_NAME = re.compile(r"^\.usgen-(\d+)-[0-9a-f]{8}-")


def check_output_folder(path: str | Path) -> Path:
    """Raise UsgenInputError unless the folder that will hold ``path`` exists and is writable."""
    path = Path(path)
    check_output_name(path)  # the hidden temporary adds a prefix to the name
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UsgenInputError(parent, "output folder does not exist")
    if not parent.is_dir():
        raise UsgenInputError(parent, "output folder is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsgenInputError(parent, "output folder is not writable")
    return parent


def temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` that keeps its full ending (``.seq.nrrd``, ``.mp4``: several
    writers choose their format from it) and names this process."""
    return path.parent / f".usgen-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}"


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries in ``folder`` whose writer no longer runs; return them. A process ID
    that was reused by now keeps its temporary until that process ends too (never a live one's)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid() or _running(int(match.group(1))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)  # another job's sweep may have been first
        removed.append(path)
    return removed


@contextmanager
def _one_line_errors(path: Path, parent: Path) -> Iterator[None]:
    try:
        yield
    except PermissionError as err:
        raise UsgenInputError(parent, f"output folder is not writable ({err.strerror})") from err
    except OSError as err:  # a vanished folder, a full disk: still one line, nothing left behind
        raise UsgenInputError(path, f"cannot be written ({err.strerror or err})") from err


def _prepare(path: str | Path) -> tuple[Path, Path, Path]:
    """(path, its checked folder, a fresh temporary name) after sweeping dead writers' temporaries."""
    path = Path(path)
    parent = check_output_folder(path)
    remove_stale_temporaries(parent)
    return path, parent, temporary_name(path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the same file name ending as ``path``; rename on success."""
    path, parent, tmp = _prepare(path)
    try:
        with _one_line_errors(path, parent):
            yield tmp
            if not tmp.exists():
                raise OSError(f"writer produced no file at {tmp}")
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new hidden temporary folder beside ``path``; on success it becomes ``path``.

    Where ``path`` is missing or an empty folder, all the outputs appear at once (one rename).
    Into a folder that already holds files (a re-run), they move in one by one, each complete,
    after all were written; the folder's other files are left alone.
    """
    path, parent, tmp = _prepare(path)
    try:
        with _one_line_errors(path, parent):
            tmp.mkdir()
            yield tmp
            if path.is_dir() and any(path.iterdir()):
                for entry in sorted(tmp.iterdir()):
                    os.replace(entry, path / entry.name)
                tmp.rmdir()
            else:
                if path.is_dir():
                    path.rmdir()
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
