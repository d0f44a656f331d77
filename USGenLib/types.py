"""The two data types that travel through every USGen stage: ``Cine`` and ``Volume``.

Geometry follows ITK/SimpleITK and DICOM: physical space is LPS, in millimetres.
``spacing`` and ``origin`` are given in index order (i = column, j = row, k = slice);
``direction`` is a 3x3 matrix whose columns are the i, j, k axis directions in LPS.
Arrays are stored in NumPy order, slowest axis first: a cine is (T, H, W[, 3]) = (t, j, i[, c]),
a volume is (K, J, I). Slicer shows a cine with the identity direction upright in its axial
view: i runs to the patient's left (screen right), j to posterior (screen down).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# Physical pixel and voxel sizes outside this range (mm) are corrupt headers, not images: a
# micrometre-thin voxel beside a kilometre-long one made the simulator allocate gigabytes.
SPACING_RANGE_MM = (1e-4, 1e4)


def _vec3(value, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return arr


def _spacing(value) -> np.ndarray:
    arr = _vec3(value, "spacing")
    lo, hi = SPACING_RANGE_MM
    if np.any(arr <= 0):
        raise ValueError(f"spacing must be positive, got {arr.tolist()} mm")
    if np.any(arr < lo) or np.any(arr > hi):
        raise ValueError(f"spacing {arr.tolist()} mm lies outside {lo:g}..{hi:g} mm")
    return arr


def _direction(value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(arr)) or abs(np.linalg.det(arr)) < 1e-6:
        raise ValueError(f"direction must be an invertible 3x3 matrix of finite numbers, got {np.round(arr, 6).tolist()}")
    return arr


def index_to_physical(spacing, origin, direction) -> np.ndarray:
    """4x4 matrix mapping (i, j, k, 1) to LPS millimetres."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(direction) @ np.diag(spacing)
    m[:3, 3] = origin
    return m


@dataclass
class Cine:
    """An ultrasound image sequence.

    frames:    (T, H, W) grey or (T, H, W, 3) RGB array, any numeric dtype (uint8 for display).
               May be a read-only ``np.memmap`` for large files read from disk.
    spacing:   (sx, sy, sz) mm: column spacing, row spacing, slice thickness.
    origin:    LPS position (mm) of the centre of pixel (0, 0).
    direction: 3x3, columns are the row (i), column (j) and normal (k) directions in LPS.
    times:     (T,) frame acquisition times in seconds, strictly increasing.
    meta:      source metadata (modality, photometric interpretation, UIDs, source path, ...).
    """

    frames: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    times: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.frames.ndim not in (3, 4) or (self.frames.ndim == 4 and self.frames.shape[-1] != 3):
            raise ValueError(f"frames must be (T,H,W) or (T,H,W,3), got shape {self.frames.shape}")
        if min(self.frames.shape[:3]) < 1:  # nothing to show; writers would emit files without pixels
            raise ValueError(f"a cine needs at least one frame of at least 1x1 pixels, got {self.frames.shape[:3]} (T, H, W)")
        self.spacing = _spacing(self.spacing)
        self.origin = _vec3(self.origin, "origin")
        self.direction = _direction(self.direction)
        if self.times is None:
            self.times = np.arange(self.num_frames, dtype=np.float64) / 30.0
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        if self.times.shape != (self.num_frames,):
            raise ValueError(f"times has {self.times.size} values for {self.num_frames} frames")
        if not np.all(np.isfinite(self.times)) or np.any(np.diff(self.times) <= 0):
            raise ValueError("frame times must be finite and strictly increasing")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def channels(self) -> int:
        return 3 if self.frames.ndim == 4 else 1

    @property
    def is_rgb(self) -> bool:
        return self.frames.ndim == 4

    @property
    def fps(self) -> float | None:
        """Frames per second from the median frame interval; None for a single frame."""
        if self.num_frames < 2:
            return None
        return float(1.0 / np.median(np.diff(self.times)))

    def index_to_physical(self) -> np.ndarray:
        return index_to_physical(self.spacing, self.origin, self.direction)

    def with_frames(self, frames: np.ndarray, **changes) -> "Cine":
        """Same geometry, times and metadata; new pixels (same T, H, W). Stages use this."""
        if frames.shape[:3] != self.frames.shape[:3]:
            raise ValueError(f"new frames {frames.shape[:3]} do not match {self.frames.shape[:3]}")
        return replace(self, frames=frames, meta=dict(self.meta), **changes)


@dataclass
class Volume:
    """A 3-D image: CT in HU (float32) or a label map (integers), with physical geometry.

    array:     (K, J, I) in NumPy order (as SimpleITK's GetArrayFromImage gives).
    spacing:   (sx, sy, sz) mm in index order i, j, k.
    origin:    LPS position (mm) of voxel (0, 0, 0).
    direction: 3x3, columns are the i, j, k axis directions in LPS.
    kind:      "ct" (Hounsfield units) or "labels".
    meta:      source metadata.
    """

    array: np.ndarray
    spacing: np.ndarray = field(default_factory=lambda: np.ones(3))
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    kind: str = "ct"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.array.ndim != 3:
            raise ValueError(f"a volume array must be 3-D (K,J,I), got shape {self.array.shape}")
        if self.kind not in ("ct", "labels"):
            raise ValueError(f"kind must be 'ct' or 'labels', got {self.kind!r}")
        if min(self.array.shape) < 1:
            raise ValueError(f"a volume needs at least one voxel along each axis, got shape {self.array.shape}")
        self.spacing = _spacing(self.spacing)
        self.origin = _vec3(self.origin, "origin")
        self.direction = _direction(self.direction)

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        k, j, i = self.array.shape
        return i, j, k

    def index_to_physical(self) -> np.ndarray:
        return index_to_physical(self.spacing, self.origin, self.direction)
