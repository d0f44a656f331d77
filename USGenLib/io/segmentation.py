"""Slicer segmentations (.seg.nrrd) through slicerio: segment names, colours and label values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicerio

from USGenLib.errors import UsgenInputError, refuse_invalid
from USGenLib.io.atomic import atomic_path
from USGenLib.io.nrrdbody import read_nrrd_header, read_pieces
from USGenLib.limits import require_memory
from USGenLib.types import Volume


def write_segmentation(labels: Volume, path: str | Path, segments: dict[int, tuple[str, tuple[float, float, float]]]) -> Path:
    """Write a label map as a .seg.nrrd.

    labels:   Volume with integer labels (K, J, I).
    segments: {label value: (name, (r, g, b) in 0..1)}; labels not listed are left out.
    """
    path = Path(path)
    voxels = np.transpose(np.asarray(labels.array), (2, 1, 0))  # slicerio wants (i, j, k)
    present = set(np.unique(voxels).tolist())
    dtype = np.uint8 if max(present) <= 255 else np.uint16
    # One shared layer keeps the caller's label values (slicerio.add_segment would renumber them).
    seg = slicerio.create_segmentation(voxels.shape, labels.index_to_physical(), dtype=dtype)
    keep = [v for v in sorted(segments) if v in present and v != 0]
    seg["voxels"] = np.where(np.isin(voxels, keep), voxels, 0).astype(dtype)
    seg["segments"] = [{"id": f"Segment_{v}", "name": segments[v][0], "color": list(segments[v][1]),
                        "labelValue": int(v), "layer": 0} for v in keep]
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(str(tmp), seg, compression_level=1)
    return path


def read_segmentation(path: str | Path) -> tuple[Volume, dict[int, tuple[str, tuple[float, float, float]]]]:
    """Read a .seg.nrrd back into a label Volume and its segment table (single-layer files).

    slicerio reads through pynrrd, which inflates a gzip body whole: the header and body are first
    checked here (declared size within the file and the budget, no data past it), a frame at a time."""
    header, body = read_nrrd_header(path)
    require_memory(path, 3 * body.nbytes, "the segmentation")  # pynrrd's buffer, the array, the label map
    for _ in read_pieces(body, body.items // body.sizes[-1]):
        pass
    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as err:  # slicerio raises KeyError, ValueError... for malformed segment fields
        raise UsgenInputError(path, f"not a readable segmentation ({type(err).__name__}: {str(err)[:120]})") from None
    voxels = np.asarray(seg["voxels"])
    if voxels.ndim == 4:
        raise UsgenInputError(path, "overlapping segments (several layers) cannot become one label map")
    m = np.asarray(seg["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    with refuse_invalid(path):
        vol = Volume(array=np.ascontiguousarray(np.transpose(voxels, (2, 1, 0))), spacing=spacing,
                     origin=m[:3, 3], direction=m[:3, :3] / spacing, kind="labels", meta={"source": str(path)})
    table = {int(s["labelValue"]): (s["name"], tuple(float(c) for c in s["color"])) for s in seg["segments"]}
    return vol, table
