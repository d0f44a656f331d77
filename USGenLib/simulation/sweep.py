"""Sweeps: lists of probe poses around a base pose.

Each frame applies, in probe coordinates about the contact point: a translation along the probe's
elevation axis (a parallel sweep), a fan tilt (rotation about the lateral x axis, rocking the plane)
and a rotation about the probe axis y. All three vary linearly from -1/2 to +1/2 of their span over
the sweep, so the middle frame is the base pose.
"""

from __future__ import annotations

import math

import numpy as np


def _rot(axis: int, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    m = np.eye(4)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def sweep_poses(base: np.ndarray, frames: int, span_mm: float = 0.0, tilt_deg: float = 0.0,
                rotate_deg: float = 0.0) -> np.ndarray:
    """(frames, 4, 4) poses: base @ T(z = t span) @ Rx(t tilt) @ Ry(t rotate), t from -1/2 to 1/2."""
    if frames < 1:
        raise ValueError(f"a sweep needs at least one frame, got {frames}")
    ts = np.linspace(-0.5, 0.5, frames) if frames > 1 else np.zeros(1)
    out = np.empty((frames, 4, 4))
    for n, t in enumerate(ts):
        shift = np.eye(4)
        shift[2, 3] = t * span_mm
        out[n] = np.asarray(base, dtype=np.float64) @ shift @ _rot(0, t * tilt_deg) @ _rot(1, t * rotate_deg)
    return out


def extent_along(index_to_lps: np.ndarray, sizes_ijk, direction: np.ndarray) -> float:
    """Length (mm) of a volume's voxel box projected on a unit ``direction``."""
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, sizes_ijk[0] - 0.5) for j in (-0.5, sizes_ijk[1] - 0.5)
                        for k in (-0.5, sizes_ijk[2] - 0.5)])
    proj = (corners @ index_to_lps.T)[:, :3] @ np.asarray(direction, dtype=np.float64)
    return float(proj.max() - proj.min())
