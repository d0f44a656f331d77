"""Limits checked before anything large is allocated or anything odd is opened.

A small hostile file (a gzip bomb, a header claiming gigabytes, a symlink to /dev/zero, a FIFO)
must fail in milliseconds with one line, not after filling memory or hanging. Every reader asks
here first: is this a regular file, does the size its header declares fit in the file and in the
memory budget. The budget is one number for the whole process, set once by the CLI's
``--max-memory`` (default 8 GB, which leaves room on a 24 GB machine for the rest of the job).
docs/file-formats.md ("Limits") lists every limit.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from pathlib import Path

from USGenLib.errors import UsgenInputError

DEFAULT_MAX_MEMORY = 8 * 1024 ** 3
# Deflate cannot expand data more than 1032:1 (RFC 1951 block limits); a header declaring more
# decompressed bytes than that is lying, whatever the budget.
MAX_DEFLATE_RATIO = 1032
MAX_NAME_BYTES = 255 - 32  # room for the ".usgen-<pid>-<8 hex>-" prefix of atomic temporaries
MAX_HEADER_BYTES = 64 * 1024 ** 2  # a NRRD header of 64 MB holds millions of frame times

_budget = DEFAULT_MAX_MEMORY


def set_memory_budget(nbytes: int) -> None:
    global _budget
    _budget = int(nbytes)


def memory_budget() -> int:
    return _budget


def parse_memory(text: str) -> int:
    """'8G', '8GB', '512M', '1.5g' or a plain number of bytes -> bytes (at least 64 MB)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m:
        raise UsgenInputError(None, f"--max-memory must look like 8G or 512M, got '{text}'")
    nbytes = int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))
    if nbytes < 64 * 1024 ** 2:
        raise UsgenInputError(None, f"--max-memory {text} is below the 64 MB any job needs")
    return nbytes


def human(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # unreachable


def require_memory(path, nbytes: float, what: str) -> None:
    """Refuse, before allocating, anything that would need more than the memory budget."""
    if nbytes > _budget:
        raise UsgenInputError(path, f"{what} needs {human(nbytes)} of memory, over the --max-memory budget of "
                                    f"{human(_budget)}")


def check_regular(path: str | Path, folder_ok: bool = False) -> Path:
    """Refuse FIFOs, devices and sockets (and symlinks to them) before anything opens them:
    a FIFO blocks a reader forever and /dev/zero never ends."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows symlinks: a link to /dev/zero is a device
    except FileNotFoundError:
        raise UsgenInputError(path, "file does not exist") from None
    except OSError as err:
        raise UsgenInputError(path, f"cannot be read ({err.strerror})") from None
    if stat.S_ISDIR(mode) and folder_ok:
        return path
    if stat.S_ISDIR(mode):
        raise UsgenInputError(path, "is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise UsgenInputError(path, f"is {kind}; only regular files are read")
    return path


def check_declared_size(path, declared: int, stored: int, compression: str | None, whole: bool = True) -> None:
    """A header's declared data size against what the file can hold, then (``whole``: it will be
    read at once, not streamed) against the memory budget.

    compression: None (raw: the file must hold every byte), "gzip"/"zlib" (at most 1032x), or
    "other" (bzip2 and unknown codecs: no ratio bound, the budget still applies).
    """
    if declared < 0:
        raise UsgenInputError(path, f"header declares a negative data size ({declared} bytes)")
    if compression is None and stored < declared:
        raise UsgenInputError(path, f"truncated: header declares {human(declared)} of data but the file holds "
                                    f"{human(stored)}")
    if compression in ("gzip", "zlib") and declared > MAX_DEFLATE_RATIO * stored + 1024:
        raise UsgenInputError(path, f"header declares {human(declared)} of data, more than {human(stored)} of "
                                    f"{compression} data can hold")
    if whole:
        require_memory(path, declared, "the image data")


def check_beside(header_path: str | Path, data_name: str) -> Path:
    """A detached header's data file, accepted only when it lies in the header's own folder: a
    header naming /etc/passwd or ../x would copy a file the user never chose into the output."""
    header_path = Path(header_path)
    name = str(data_name).strip()
    if not name or os.path.isabs(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise UsgenInputError(header_path, f"data file '{name}' is not a plain file name beside the header "
                                           "(absolute paths and folders are refused)")
    data = header_path.parent / name
    if data.resolve().parent != header_path.resolve().parent:  # a symlink leading elsewhere
        raise UsgenInputError(header_path, f"data file '{name}' leads outside the header's folder")
    check_regular(data)
    return data


def check_output_name(path: str | Path) -> None:
    """Refuse an output name the file system (255 bytes) cannot hold with its temporary prefix."""
    size = len(os.fsencode(Path(path).name))
    if size > MAX_NAME_BYTES:
        raise UsgenInputError(path, f"output file name is {size} bytes long; at most {MAX_NAME_BYTES} are allowed")


def probe_writable(folder: str | Path) -> None:
    """Create and remove a hidden folder in ``folder``: the one test that also catches read-only
    mounts and root-owned paths (os.access says yes to root everywhere)."""
    folder = Path(folder)
    probe = folder / f".usgen-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise UsgenInputError(folder, f"output folder is not writable ({err.strerror or err})") from None


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (benchmarks report it)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes
