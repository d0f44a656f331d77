"""Slicer volume sequences (.seq.nrrd) and plain NRRD images as cines.

Writing follows Slicer's own writer (vtkMRMLVolumeSequenceStorageNode + vtkITKImageSequenceWriter):
a 4-D ITK image, the three spatial axes first and the list (sequence) axis last, plus a leading
RGB-color axis for colour cines, with ``axis 3 index type/values`` carrying the frame times.
The exact header is documented in docs/file-formats.md.

pynrrd reads every NRRD here; the writer formats the header with pynrrd's field formatters but
streams the gzip body frame by frame itself, because pynrrd.write needs the whole array in memory.
"""

from __future__ import annotations

import threading
import queue
import zlib
from pathlib import Path

import numpy as np

from USGenLib.errors import UsgenInputError, refuse_invalid
from USGenLib.io.atomic import atomic_path
from USGenLib.io.plus import frame_field_lines, sequence_meta
from USGenLib.io.frames import FrameSource
from USGenLib.io.nrrdbody import read_all, read_nrrd_header, read_pieces
from USGenLib.limits import require_memory
from USGenLib.progress import progress
from USGenLib.types import Cine

NRRD_TYPES = {
    np.dtype(np.uint8): "unsigned char",
    np.dtype(np.int8): "signed char",
    np.dtype(np.uint16): "unsigned short",
    np.dtype(np.int16): "short",
    np.dtype(np.uint32): "unsigned int",
    np.dtype(np.int32): "int",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}
COLOR_KINDS = {"rgb-color", "rgba-color", "3-color", "4-color", "vector", "3-vector", "4-vector",
               "covariant-vector", "normal"}
LPS = "left-posterior-superior"
RAS = "right-anterior-superior"


def _fmt_vec(v) -> str:
    return "(" + ",".join(repr(float(x)) for x in v) + ")"


def seq_nrrd_header(cine: Cine, dtype: np.dtype, encoding: str = "gzip", labels: bool = False) -> str:
    """The header text written for ``cine`` (also used by tests and docs); ``labels`` makes Slicer load
    the frames as label maps."""
    if dtype not in NRRD_TYPES:
        raise ValueError(f"cannot write pixel type {dtype} to NRRD")
    axes_dirs = [cine.direction[:, a] * cine.spacing[a] for a in range(3)]
    spatial_sizes = [cine.width, cine.height, 1]
    if cine.is_rgb:
        sizes = [3, *spatial_sizes, cine.num_frames]
        dirs = ["none", *(_fmt_vec(d) for d in axes_dirs), "none"]
        kinds = ["RGB-color", "domain", "domain", "domain", "list"]
        node_class = "vtkMRMLVectorVolumeNode"
    else:
        sizes = [*spatial_sizes, cine.num_frames]
        dirs = [*(_fmt_vec(d) for d in axes_dirs), "none"]
        kinds = ["domain", "domain", "domain", "list"]
        node_class = "vtkMRMLLabelMapVolumeNode" if labels else "vtkMRMLScalarVolumeNode"
    n = len(sizes)
    lines = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {NRRD_TYPES[dtype]}",
        f"dimension: {n}",
        f"space: {LPS}",
        "sizes: " + " ".join(str(s) for s in sizes),
        "space directions: " + " ".join(dirs),
        "kinds: " + " ".join(kinds),
        "labels: " + " ".join(['""'] * (n - 1) + ['"time"']),
        "units: " + " ".join(['""'] * (n - 1) + ['"s"']),
        "endian: little",
        f"encoding: {encoding}",
        "space origin: " + _fmt_vec(cine.origin),
        # Key/value pairs (":="), as Slicer writes them. Slicer numbers the sequence axis 3
        # whether or not a colour axis precedes it, and reads only "axis 0" or "axis 3" keys.
        "axis 3 index type:=numeric",
        "axis 3 index values:=" + " ".join(repr(float(t)) for t in cine.times),
        f"DataNodeClassName:={node_class}",
        # A tracked cine's transforms, as PLUS writes them in NRRD; the frame times are the index values.
        *frame_field_lines(cine, ":="),
    ]
    return "\n".join(lines) + "\n\n"


def write_seq_nrrd(cine: Cine, path: str | Path, compression_level: int = 1, labels: bool = False) -> Path:
    """Write ``cine`` as a Slicer volume sequence, streaming one frame at a time; ``labels``: a label
    map sequence (grey cines only).

    Frames are converted to a little-endian NRRD type (bool -> uint8, float16 -> float32);
    compression runs in a second thread (zlib releases the GIL) while frames are prepared.
    """
    path = Path(path)
    dtype = np.dtype(cine.frames.dtype)
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    elif dtype == np.float16:
        dtype = np.dtype(np.float32)
    elif dtype == np.int64 or dtype == np.uint64:
        dtype = np.dtype(np.int32)
    dtype = dtype.newbyteorder("=")  # the header names the type; the body is written little-endian
    header = seq_nrrd_header(cine, dtype, labels=labels)
    chunks: queue.Queue = queue.Queue(maxsize=8)
    failure: list[BaseException] = []

    def compress_into(fh):
        comp = zlib.compressobj(compression_level, zlib.DEFLATED, 31)  # 31: gzip container
        try:
            while (buf := chunks.get()) is not None:
                fh.write(comp.compress(buf))
            fh.write(comp.flush())
        except BaseException as err:  # surfaced in the main thread
            failure.append(err)
            while chunks.get() is not None:
                pass

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.encode("ascii"))
        worker = threading.Thread(target=compress_into, args=(fh,), daemon=True)
        worker.start()
        try:
            with progress(cine.num_frames, "write " + path.name) as rep:
                for t in range(cine.num_frames):
                    frame = np.ascontiguousarray(cine.frames[t], dtype=dtype.newbyteorder("<"))
                    chunks.put(frame.tobytes())
                    rep.update(1)
        finally:
            chunks.put(None)
            worker.join()
        if failure:
            raise failure[0]
    return path


def _axis_roles(header: dict, sizes: tuple[int, ...], path: Path) -> tuple[int | None, int | None, list[int]]:
    """(list axis, component axis, spatial axes) in NRRD (fastest-first) axis order."""
    ndim = len(sizes)
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * ndim)]
    if len(kinds) != ndim:
        raise UsgenInputError(path, f"header has {len(kinds)} kinds for {ndim} axes")
    dirs = header.get("space directions")
    has_dir = [True] * ndim
    if dirs is not None:
        if len(dirs) != ndim:
            raise UsgenInputError(path, f"header has {len(dirs)} space directions for {ndim} axes")
        has_dir = [bool(np.all(np.isfinite(np.asarray(d, dtype=float)))) for d in dirs]
    list_axis = next((a for a, k in enumerate(kinds) if k == "list"), None)
    comp_axis = next((a for a, k in enumerate(kinds) if k in COLOR_KINDS), None)
    if comp_axis is None and ndim >= 3 and not has_dir[0] and list_axis != 0 and sizes[0] in (3, 4):
        comp_axis = 0
    if list_axis is None:
        # A Slicer sequence without kinds: the non-spatial axis that is not the colour axis.
        candidates = [a for a in range(ndim) if not has_dir[a] and a != comp_axis]
        if candidates and ndim - (comp_axis is not None) == 4:
            list_axis = candidates[-1]
    spatial = [a for a in range(ndim) if a not in (list_axis, comp_axis)]
    if len(spatial) not in (2, 3):
        raise UsgenInputError(path, f"NRRD with {ndim} axes (kinds {kinds}) is not an image or image sequence")
    return list_axis, comp_axis, spatial


def _index_values(header: dict, list_axis: int | None) -> list[str] | None:
    for key in ("axis 3 index values", "axis 0 index values", f"axis {list_axis} index values"):
        if key in header:
            return str(header[key]).split()
    return None


def _geometry(header: dict, spatial: list[int], path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing, origin, direction) in LPS from the spatial axes (a 2-D image padded to 3-D)."""
    dirs = header.get("space directions")
    space = str(header.get("space", LPS)).lower()
    try:
        if dirs is not None:
            vecs = [np.asarray(dirs[a], dtype=float).reshape(-1) for a in spatial]
            vecs = [np.pad(v, (0, 3 - v.size)) if v.size <= 3 else v for v in vecs]
        else:
            spacings = header.get("spacings")
            vecs = [np.eye(3)[n] * (float(spacings[a]) if spacings is not None else 1.0) for n, a in enumerate(spatial)]
        origin = np.zeros(3)
        if "space origin" in header:
            o = np.asarray(header["space origin"], dtype=float).reshape(-1)
            origin[: o.size] = o[:3]
    except (ValueError, TypeError, IndexError) as err:
        raise UsgenInputError(path, f"header geometry is malformed ({err})") from None
    if any(v.shape != (3,) or not np.all(np.isfinite(v)) for v in vecs):
        raise UsgenInputError(path, "space directions of the image axes must be finite 3-vectors")
    if len(vecs) == 2:
        normal = np.cross(vecs[0], vecs[1])
        vecs.append(normal / max(np.linalg.norm(normal), 1e-12))
    flip = np.array([-1.0, -1.0, 1.0]) if space in (RAS, "ras") else np.ones(3)
    vecs = [v * flip for v in vecs]
    spacing = np.array([np.linalg.norm(v) for v in vecs])
    if np.any(spacing <= 0):
        raise UsgenInputError(path, f"an image axis has zero spacing (space directions {[v.tolist() for v in vecs]})")
    direction = np.stack([v / s for v, s in zip(vecs, spacing)], axis=1)
    return spacing, origin * flip, direction


# Index units that are times, with their factor to seconds.
TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3,
              "us": 1e-6, "\u00b5s": 1e-6, "min": 60.0}


def _list_axis_entry(header: dict, key: str, list_axis: int | None) -> str:
    """The list axis's entry of a per-axis field ("units", "labels"), or ""."""
    values = header.get(key)
    if list_axis is None or values is None or len(values) <= list_axis:
        return ""
    return str(values[list_axis]).strip().strip('"').strip()


def _times(header: dict, list_axis: int | None, t: int) -> tuple[np.ndarray, str]:
    """Frame times in seconds from the index values, honouring the index unit: s, ms (and other time
    units) are scaled; a Slicer DICOM sequence's "frame" index (no unit) and non-time units keep
    their values as frame positions; no unit on a "time" (or unnamed) axis is taken as seconds."""
    values = _index_values(header, list_axis)
    if values is None:
        return np.arange(t, dtype=float), "none in file: frame indices"
    try:
        times = np.array([float(v) for v in values])
    except ValueError:
        return np.arange(t, dtype=float), "index values unreadable: frame indices"
    if times.size != t or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        # NaN, infinite, repeated or a wrong count: the frames still have an order, not usable times
        return np.arange(t, dtype=float), "index values not finite and increasing: frame indices"
    unit = _list_axis_entry(header, "units", list_axis)
    name = _list_axis_entry(header, "labels", list_axis)
    if unit.lower() in TIME_UNITS:
        scale = TIME_UNITS[unit.lower()]
        return times * scale, "file" if scale == 1.0 else f"file ({unit}, converted to s)"
    if unit:
        return times, f"index in {unit}, not a time: index values kept as frame positions"
    if name.lower() in ("", "time"):
        return times, "file (no unit: seconds assumed)" if name else "file"
    return times, f"index '{name}' without times: index values kept as frame positions"


def read_seq_nrrd(path: str | Path, lazy: bool = False) -> Cine:
    """Read a Slicer volume sequence (list axis last, current; or first, Sequences extension
    before Slicer 5.4) or a plain 2-D/3-D NRRD image (its slices become frames).

    With ``lazy``, a file whose frames are stored one after another (every current layout) gives a
    Cine whose frames are a FrameSource, decoded one at a time as a writer asks for them."""
    path = Path(path)
    header, body = read_nrrd_header(path)
    sizes = body.sizes
    list_axis, comp_axis, spatial = _axis_roles(header, sizes, path)
    ncomp = sizes[comp_axis] if comp_axis is not None else 1
    if ncomp not in (1, 3):
        raise UsgenInputError(path, f"{ncomp}-component pixels are not supported (grey or RGB only)")
    k = sizes[spatial[2]] if len(spatial) == 3 else 1
    if k > 1 and list_axis is not None:
        raise UsgenInputError(path, f"a sequence of 3-D volumes ({k} slices per frame); a cine needs 2-D frames")
    frame_axis = list_axis if list_axis is not None else (spatial[2] if k > 1 else None)
    t = sizes[frame_axis] if frame_axis is not None else 1
    h, w = sizes[spatial[1]], sizes[spatial[0]]
    frame_shape = (h, w, 3) if ncomp == 3 else (h, w)
    spacing, origin, direction = _geometry(header, spatial, path)
    times, times_from = _times(header, list_axis, t)
    stamps, tracked = sequence_meta(header, t, path)  # PLUS (.igs.nrrd): Seq_Frame time stamps, transforms
    if times_from != "file" and stamps is not None:
        times, times_from = stamps, "Seq_Frame time stamps"
    meta = {"source": str(path), "format": "nrrd", "times_from": times_from,
            "index_unit": _list_axis_entry(header, "units", list_axis),
            "index_name": _list_axis_entry(header, "labels", list_axis), **tracked}
    streamable = frame_axis in (None, len(sizes) - 1) and comp_axis in (None, 0)
    if streamable:
        per_frame = int(np.prod(sizes[:-1])) if frame_axis is not None else body.items
        dtype = body.dtype.newbyteorder("=")

        def frames():  # NRRD order is fastest-first: one frame's values reversed are (.., j, i[, c])
            for piece in read_pieces(body, per_frame):
                yield piece.astype(dtype, copy=False).reshape(h, w, ncomp)[..., 0] if ncomp == 1 \
                    else piece.astype(dtype, copy=False).reshape(h, w, 3)

        source = FrameSource((t,) + frame_shape, dtype, frames, path)
        if not lazy:
            require_memory(path, source.nbytes, "the whole sequence")
        data = source if lazy else np.ascontiguousarray(np.asarray(source))
    else:
        arr = np.transpose(read_all(body), ([list_axis] if list_axis is not None else []) + spatial[::-1]
                           + ([comp_axis] if comp_axis is not None else []))
        if list_axis is None:
            arr = arr[np.newaxis]
        if len(spatial) == 2:
            arr = arr[:, np.newaxis]
        if k > 1:
            arr = arr[0][:, np.newaxis]
        arr = arr[:, 0]
        if comp_axis is not None and arr.shape[-1] == 1:
            arr = arr[..., 0]
        data = np.ascontiguousarray(arr).astype(body.dtype.newbyteorder("="), copy=False)
    with refuse_invalid(path):
        return Cine(frames=data, spacing=spacing, origin=origin, direction=direction, times=times, meta=meta)
