"""Left-ventricle measurements from 2-D masks: long axis, method-of-discs chords, volumes, EF.

Single-plane Simpson's method of discs: the LV mask's long axis (its principal axis) is cut into
``n`` discs; each disc's diameter is the mask's width across the axis; V = sum(pi/4 d_i^2 h)
(the width is measured as the strip's pixel count over its height, which pixelisation does not bias).
The chords are also what EchoNet-Dynamic's VolumeTracings.csv stores (long axis first, then one
row per disc). No library provides echocardiographic disc summation; this is hand-written numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DiscTracing:
    """Long axis and disc chords of one LV mask, in pixel coordinates (x = column, y = row).

    axis:   (2, 2) the long axis end points [[x1, y1], [x2, y2]] (first: one end, second: the other).
    chords: (n, 2, 2) per disc, the two chord ends [[x1, y1], [x2, y2]], all x1 on the same side.
    length: long-axis length in pixels; diameters: (n,) chord lengths in pixels;
    widths: (n,) mean widths in pixels (mask pixels in the disc's strip / strip height): unbiased
    for pixelised shapes, used for volumes.
    """

    axis: np.ndarray
    chords: np.ndarray
    length: float
    diameters: np.ndarray
    widths: np.ndarray

    def rows(self) -> list[tuple[float, float, float, float]]:
        """VolumeTracings rows (X1, Y1, X2, Y2): the long axis, then the chords."""
        out = [tuple(float(v) for v in self.axis.reshape(-1))]
        out += [tuple(float(v) for v in c.reshape(-1)) for c in self.chords]
        return out


def disc_tracing(mask: np.ndarray, n_discs: int = 20) -> DiscTracing | None:
    """Method-of-discs chords of a 2-D bool mask (H, W); None when the mask has under 3 pixels."""
    ys, xs = np.nonzero(mask)
    if ys.size < 3:
        return None
    pts = np.stack([xs, ys], 1).astype(np.float64)
    centre = pts.mean(0)
    cov = np.cov((pts - centre).T)
    evals, evecs = np.linalg.eigh(cov)
    axis_dir = evecs[:, np.argmax(evals)]
    if axis_dir[1] < 0 or (axis_dir[1] == 0 and axis_dir[0] < 0):
        axis_dir = -axis_dir                       # deterministic orientation: pointing down the image
    perp = np.array([-axis_dir[1], axis_dir[0]])
    rel = pts - centre
    t = rel @ axis_dir
    u = rel @ perp
    # Pixels are unit squares: extend the extent by half a pixel at each end.
    t0, t1 = t.min() - 0.5, t.max() + 0.5
    length = t1 - t0
    h = length / n_discs
    idx = np.clip(((t - t0) / h).astype(int), 0, n_discs - 1)
    umin = np.full(n_discs, np.inf)
    umax = np.full(n_discs, -np.inf)
    np.minimum.at(umin, idx, u)
    np.maximum.at(umax, idx, u)
    empty = ~np.isfinite(umin)
    umin[empty] = 0.0
    umax[empty] = 0.0
    diam = np.where(empty, 0.0, umax - umin + 1.0)
    widths = np.bincount(idx, minlength=n_discs).astype(np.float64) / h
    tc = t0 + (np.arange(n_discs) + 0.5) * h
    lo = centre + tc[:, None] * axis_dir + (umin - 0.5 * ~empty)[:, None] * perp
    hi = centre + tc[:, None] * axis_dir + (umax + 0.5 * ~empty)[:, None] * perp
    axis = np.stack([centre + t0 * axis_dir, centre + t1 * axis_dir])
    return DiscTracing(axis, np.stack([lo, hi], 1), float(length), diam, widths)


def simpson_volume(mask: np.ndarray, pixel_mm: float = 1.0, n_discs: int = 20) -> float:
    """Single-plane method-of-discs volume (ml) of a 2-D LV mask with square pixels of ``pixel_mm``."""
    tr = disc_tracing(mask, n_discs)
    if tr is None:
        return 0.0
    h = tr.length / n_discs
    return float(np.sum(np.pi / 4 * tr.widths ** 2) * h * pixel_mm ** 3 / 1000.0)


def area_length_volume(mask: np.ndarray, pixel_mm: float = 1.0) -> float:
    """Single-plane area-length volume (ml): 8 A^2 / (3 pi L)."""
    tr = disc_tracing(mask)
    if tr is None:
        return 0.0
    area = float(mask.sum()) * pixel_mm ** 2
    return 8 * area ** 2 / (3 * np.pi * tr.length * pixel_mm) / 1000.0


def sphere_area_volume(mask: np.ndarray, pixel_mm: float = 1.0) -> float:
    """Short-axis single-plane volume (ml): the sphere of the mask's area, 4/3 pi (A / pi)^(3/2)."""
    area = float(mask.sum()) * pixel_mm ** 2
    return 4.0 / 3.0 * np.pi * (area / np.pi) ** 1.5 / 1000.0


VOLUME_METHODS = {"simpson": simpson_volume, "area-length": area_length_volume, "sphere": sphere_area_volume}


def ejection_fraction_from_masks(masks: np.ndarray, pixel_mm: float = 1.0,
                                 method: str = "simpson") -> tuple[float, int, int, float, float]:
    """EF (%) from per-frame masks (T, H, W): (ef, ed_frame, es_frame, edv_ml, esv_ml).

    ``method``: "simpson" (discs; long-axis views), "area-length", or "sphere" (short-axis views).
    ED and ES are the frames with the largest and smallest volume; ties go to the earliest frame.
    """
    if method not in VOLUME_METHODS:
        raise ValueError(f"unknown volume method {method!r} (one of {', '.join(VOLUME_METHODS)})")
    fn = VOLUME_METHODS[method]
    vols = np.array([fn(m, pixel_mm) for m in masks])
    ed, es = int(np.argmax(vols)), int(np.argmin(vols))
    edv, esv = float(vols[ed]), float(vols[es])
    ef = 100.0 * (edv - esv) / edv if edv > 0 else 0.0
    return ef, ed, es, edv, esv
