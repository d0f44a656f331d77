"""NRRD headers and data read within limits.

pynrrd parses the header fields; the data is read here because pynrrd's ``read_data`` reads the
whole file and decompresses the whole gzip stream, whatever the header declares: a 4 MB gzip bomb
became 8 GB before pynrrd noticed the size did not match. Here the header is read only up to its
blank line (at most 64 MB), the declared size is checked against the file and the memory budget
before anything is allocated, decompression never produces more than the header declares, and a
detached header's data file must lie beside it. The data can be read in pieces (one frame at a
time) so a long sequence streams.
"""

from __future__ import annotations

import bz2
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nrrd
import numpy as np
from nrrd.reader import _determine_datatype  # pynrrd's own type/endian mapping

from USGenLib.errors import UsgenInputError
from USGenLib.limits import MAX_HEADER_BYTES, check_beside, check_declared_size, check_regular, require_memory

_CHUNK = 1 << 20
_GZIP = ("gzip", "gz")
_BZIP2 = ("bzip2", "bz2")
_TEXT = ("ascii", "text", "txt")


@dataclass
class NrrdBody:
    """Where a NRRD file's data lies and how it is stored."""

    path: Path          # the header file (named in errors)
    data_path: Path     # the file holding the data (the header itself when attached)
    offset: int         # byte offset of the (possibly compressed) data in data_path
    skip: int           # bytes to skip after decompression (NRRD "byte skip" of compressed data)
    encoding: str       # raw, gzip, bzip2, ascii
    dtype: np.dtype
    sizes: tuple[int, ...]

    @property
    def items(self) -> int:
        return int(np.prod(self.sizes, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.items * self.dtype.itemsize


def _header_bytes(path: Path) -> tuple[bytes, int]:
    """The header text (up to its blank line or the end of the file) and where the data starts."""
    with open(path, "rb") as fh:
        if not fh.read(8).startswith(b"NRRD000"):
            raise UsgenInputError(path, "not a NRRD file (it does not start with NRRD000x)")
        fh.seek(0)
        buf = b""
        while True:
            chunk = fh.read(_CHUNK)
            buf += chunk
            for sep in (b"\n\n", b"\r\n\r\n"):
                end = buf.find(sep)
                if end >= 0:
                    return buf[:end], end + len(sep)
            if not chunk:
                return buf, len(buf)
            if len(buf) > MAX_HEADER_BYTES:
                raise UsgenInputError(path, "NRRD header is longer than 64 MB (no blank line ends it)")


def read_nrrd_header(path: str | Path) -> tuple[dict, NrrdBody]:
    """Parse and check a NRRD header (attached or detached); nothing of the data is read."""
    path = check_regular(path)
    text, offset = _header_bytes(path)
    try:
        header = nrrd.read_header(text.decode("latin-1").splitlines())
        for key in ("type", "dimension", "sizes", "encoding"):
            if key not in header:
                raise nrrd.NRRDError(f"header lacks the required field '{key}'")
        dtype = np.dtype(_determine_datatype(header))
    except UsgenInputError:
        raise
    except Exception as err:  # pynrrd raises NRRDError, ValueError, KeyError for malformed fields
        raise UsgenInputError(path, f"not a readable NRRD header ({str(err).splitlines()[0][:160] if str(err) else type(err).__name__})") from None
    sizes = tuple(int(s) for s in np.atleast_1d(header["sizes"]))
    if int(header["dimension"]) != len(sizes):
        raise UsgenInputError(path, f"header's dimension {header['dimension']} does not match its {len(sizes)} sizes")
    if min(sizes) < 1:
        raise UsgenInputError(path, f"header declares an empty image (sizes {' '.join(map(str, sizes))})")
    encoding = str(header["encoding"]).lower()
    if encoding not in ("raw",) + _GZIP + _BZIP2 + _TEXT:
        raise UsgenInputError(path, f"NRRD encoding '{header['encoding']}' is not supported (raw, gzip, bzip2, ascii)")
    if int(header.get("line skip", header.get("lineskip", 0))) != 0:
        raise UsgenInputError(path, "NRRD 'line skip' is not supported")
    byte_skip = int(header.get("byte skip", header.get("byteskip", 0)))
    data_name = header.get("data file", header.get("datafile"))
    data_path = path
    if data_name is not None:
        if str(data_name).split()[0].upper() == "LIST" or len(str(data_name).split()) > 1:
            raise UsgenInputError(path, "NRRD data split over several files is not supported")
        data_path, offset = check_beside(path, data_name), 0
    body = NrrdBody(path, data_path, offset, 0, encoding, dtype, sizes)
    stored = data_path.stat().st_size - offset
    compressed = encoding not in ("raw",) + _TEXT
    if byte_skip == -1 and encoding == "raw":  # the data is the last bytes of the file
        body.offset = data_path.stat().st_size - body.nbytes
        stored = body.nbytes if body.offset >= offset else stored
    elif byte_skip < 0:
        raise UsgenInputError(path, f"NRRD byte skip {byte_skip} is not supported")
    elif compressed:
        body.skip = byte_skip
    else:
        body.offset += byte_skip
        stored -= byte_skip
    if encoding in _TEXT:  # each number takes at least two characters ("0 ")
        if stored < body.items:
            raise UsgenInputError(path, f"truncated: header declares {body.items} numbers but the text holds fewer")
    else:
        check_declared_size(path, body.nbytes + body.skip, stored,
                            None if encoding == "raw" else "gzip" if encoding in _GZIP else "other", whole=False)
    if encoding == "raw" and stored > body.nbytes:
        raise UsgenInputError(path, f"holds {stored - body.nbytes} bytes more data than its header declares")
    return header, body


def _inflated(body: NrrdBody, fh, dec) -> Iterator[bytes]:
    """Decompressed bytes of a gzip or bzip2 body, never more than the header declares."""
    want = body.nbytes + body.skip
    while want > 0 and not dec.eof:
        if body.encoding in _GZIP:
            data = dec.unconsumed_tail or fh.read(_CHUNK)
        else:
            data = fh.read(_CHUNK) if dec.needs_input else b""
        if not data and (body.encoding in _GZIP or dec.needs_input):
            break
        out = dec.decompress(data, min(want, _CHUNK * 8))
        want -= len(out)
        if out:
            yield out
    if want > 0:
        raise UsgenInputError(body.path, f"truncated: the compressed data ends {want} bytes short of what the header declares")


def read_pieces(body: NrrdBody, piece_items: int) -> Iterator[np.ndarray]:
    """The data in order, ``piece_items`` values at a time (1-D arrays of the header's type)."""
    piece_bytes = piece_items * body.dtype.itemsize
    with open(body.data_path, "rb") as fh:
        fh.seek(body.offset)
        if body.encoding in _TEXT:
            for _ in range(body.items // piece_items):
                values = np.fromfile(fh, dtype=body.dtype, count=piece_items, sep=" ")
                if values.size < piece_items:
                    raise UsgenInputError(body.path, "truncated: the text holds fewer numbers than the header declares")
                yield values
            return
        if body.encoding == "raw":
            for _ in range(body.items // piece_items):
                buf = fh.read(piece_bytes)
                if len(buf) < piece_bytes:
                    raise UsgenInputError(body.path, "truncated: the data ends before what the header declares")
                yield np.frombuffer(buf, body.dtype)
            return
        pending, skip, left = bytearray(), body.skip, body.items // piece_items
        dec = zlib.decompressobj(zlib.MAX_WBITS | 32) if body.encoding in _GZIP else bz2.BZ2Decompressor()
        for out in _inflated(body, fh, dec):
            pending += out
            if skip:
                drop = min(skip, len(pending))
                del pending[:drop]
                skip -= drop
            while len(pending) >= piece_bytes:
                # checked before the last piece is handed out: a reader may never ask past it
                if left == 1 and _more(body, fh, dec):  # a gzip bomb behind a small header
                    raise UsgenInputError(body.path, "the compressed data holds more than its header declares")
                yield np.frombuffer(bytes(pending[:piece_bytes]), body.dtype)
                del pending[:piece_bytes]
                left -= 1


def _more(body: NrrdBody, fh, dec) -> bool:
    """Whether the compressed stream goes on past the declared size (one more byte is tried)."""
    if dec.eof:
        return False
    if body.encoding in _GZIP:
        return bool(dec.decompress(dec.unconsumed_tail or fh.read(_CHUNK), 1))
    return bool(dec.decompress(b"" if not dec.needs_input else fh.read(_CHUNK), 1))


def read_all(body: NrrdBody) -> np.ndarray:
    """The whole data as an array in NRRD (Fortran, fastest-first) axis order, filled one slab of
    the slowest axis at a time (the budget is checked first)."""
    require_memory(body.path, body.nbytes, "the image data")
    flat = np.empty(body.items, body.dtype)
    slab = body.items // body.sizes[-1]
    for n, piece in enumerate(read_pieces(body, slab)):
        flat[n * slab:(n + 1) * slab] = piece
    return flat.reshape(body.sizes[::-1]).T
