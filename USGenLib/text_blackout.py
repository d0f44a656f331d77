"""Black out burned-in text: every pixel outside the ultrasound image (the sector or rectangle the
probe images) is set to zero, so patient names, dates and IDs that scanners draw around it go.

Where the image is comes from the pixels: the ultrasound image is where pixels change from frame to
frame (speckle, motion) while overlays stay still, or, for a single frame or a still cine, where
pixels are not black. Opening that map removes thin strokes (text, ECG trace, calipers); of the
connected pieces left, a still picture's must be grainy (speckle; header bars and scales are
smooth), the largest is an image, and so is every piece at least a quarter its size (dual views);
the convex hull of each (sectors and rectangles are convex) brings back dark parts inside it
(anechoic areas, depth fall-off). When the DICOM ``SequenceOfUltrasoundRegions``
describes this image (``cine.meta["us_regions"]``), only what lies inside its boxes as well is kept:
scanners draw text inside a region's box too, beside the sector (a real Acuson echo shows the
patient ID there), so the boxes alone are not enough.

Text drawn inside the ultrasound image (calipers, measurement labels, a body marker) is kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from USGenLib.types import Cine

IMAGE_REGION_FORMATS = (1, 2, 3, 4)  # tissue/flow, M-mode, spectral, waveform; not 0 (none) or 5 (graphics)
MOVING_LEVEL = 2.0       # grey levels of frame-to-frame spread that count as live image
BLACK_LEVEL = 8.0        # a still pixel counts as image above this grey level
GRAIN_LEVEL = 3.0        # a still piece's median 5x5 spread of grey levels: speckle has more, bars none
MIN_IMAGE_FRACTION = 0.05
SECOND_IMAGE_SIZE = 0.25  # a piece this fraction of the largest one's size is an image too (dual views)


def regions_mask(regions: list, height: int, width: int) -> np.ndarray | None:
    """Union of the image regions' boxes, or None when they do not locate the image: boxes that
    do not fit (pixels resized after the regions were written) or that cover every pixel (a
    calibration region over the whole frame, as USGen's own DICOM writer puts)."""
    boxes = [r["box"] for r in regions if r["format"] in IMAGE_REGION_FORMATS]
    if not boxes or any(x0 < 0 or y0 < 0 or x1 >= width or y1 >= height or x1 < x0 or y1 < y0
                        for x0, y0, x1, y1 in boxes):
        return None
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1 + 1, x0:x1 + 1] = True
    return None if mask.all() else mask


def _luminance(frames: np.ndarray) -> np.ndarray:
    step = max(1, frames.shape[0] // 64)  # 64 frames tell moving from still as well as all of them
    lum = np.asarray(frames[::step], dtype=np.float32)
    return lum.mean(axis=-1) if lum.ndim == 4 else lum


def _convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    points = np.argwhere(mask)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # a line or a point: nothing to fill
        return mask
    rows, cols = np.indices(mask.shape)
    grid = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    inside = np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 0.5, axis=1)
    return inside.reshape(mask.shape) | mask


def image_mask(frames: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the ultrasound image is, found from the pixels (see module docstring)."""
    lum = _luminance(frames)
    live = lum.std(axis=0) > MOVING_LEVEL if lum.shape[0] >= 3 else np.zeros(lum.shape[1:], bool)
    still = live.mean() < MIN_IMAGE_FRACTION  # a single frame or a still cine
    if still:
        live = lum[0] > BLACK_LEVEL
    radius = max(2, round(min(lum.shape[1:]) / 150))  # strokes up to 2 * radius pixels wide go
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    labels, count = ndimage.label(ndimage.binary_opening(live, structure=disk))
    mask = np.zeros(live.shape, bool)
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=index)
    if still and count:
        grain = np.sqrt(np.maximum(ndimage.uniform_filter(lum[0] ** 2, 5) - ndimage.uniform_filter(lum[0], 5) ** 2, 0))
        sizes = np.where(ndimage.median(grain, labels, index) > GRAIN_LEVEL, sizes, 0)
    if not np.any(sizes):
        return mask
    for label in index[sizes >= SECOND_IMAGE_SIZE * sizes.max()]:
        mask |= _convex_hull_mask(labels == label)
    return mask


def blackout_text(cine: Cine) -> Cine:
    """A copy of ``cine`` with every pixel outside the ultrasound image set to zero.

    ``meta["text_blackout"]`` records what located the image; ``meta["burned_in_annotation"]``
    becomes NO (text inside the image is not removed; docs/file-formats.md says so)."""
    mask, method = image_mask(cine.frames), "found from the pixels"
    boxes = regions_mask(cine.meta.get("us_regions") or [], cine.height, cine.width)
    if boxes is not None:
        mask, method = mask & boxes, "found from the pixels, within SequenceOfUltrasoundRegions"
    frames = np.array(cine.frames)  # a writable copy (the source may be a read-only memory map)
    frames[:, ~mask] = 0
    out = cine.with_frames(frames)
    out.meta.update(text_blackout=method, burned_in_annotation="NO")
    return out
