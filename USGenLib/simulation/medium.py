"""The acoustic medium: per-voxel property grids built once per volume and kept on the device.

Channels of ``props`` (1, 3, K, J, I), float32, sampled trilinearly by ``grid_sample``:
  0: impedance minus water's (MRayl)   - zero padding outside the volume then means "water":
  1: attenuation (dB/cm/MHz)             no reflection, no attenuation and
  2: scatterer amplitude                 no echo beyond the volume's edge.
``density`` (1, 1, K, J, I) holds the scatterer density; ``labels`` (1, 1, K, J, I) the tissue
labels (float, sampled with nearest neighbour; 0 outside the volume).
"""

from __future__ import annotations

import numpy as np
import torch

from USGenLib.errors import UsgenInputError
from USGenLib.simulation.ct_properties import detect_hu_offset, hu_to_labels, hu_to_properties
from USGenLib.simulation.tissues import TISSUES, WATER, lookup
from USGenLib.types import Volume


# Air is -1000 HU, dense metal about 30,000 HU on extended-scale CT; values far outside are not HU.
HU_RANGE = (-2000.0, 40000.0)


class AcousticMedium:
    """Acoustic property grids of a CT (HU) or label volume, ready for ``grid_sample``.

    volume:    the Volume (kind "ct": HU; kind "labels": tissue-table labels, see tissues.py).
    hu_offset: "auto" (detect HU+1000 data), or a number subtracted from CT values first.
    device:    torch device for the grids.
    source:    file name for error messages.
    """

    def __init__(self, volume: Volume, hu_offset: float | str = "auto", device: str | torch.device = "cpu",
                 source: str | None = None):
        self.volume, self.device = volume, torch.device(device)
        self.source = source or volume.meta.get("source")
        arr = volume.array
        if arr.size == 0 or min(arr.shape) < 1:
            raise UsgenInputError(self.source, f"volume is empty (shape {arr.shape})")
        if volume.kind == "ct":
            if not np.all(np.isfinite(arr)):
                raise UsgenInputError(self.source, "CT contains NaN or infinite values")
            self.hu_offset = detect_hu_offset(arr) if hu_offset == "auto" else float(hu_offset)
            if not np.isfinite(self.hu_offset):
                raise UsgenInputError(None, f"--hu-offset must be a finite number, got {hu_offset}")
            hu = arr.astype(np.float32) - np.float32(self.hu_offset)
            lo, hi = float(hu.min()), float(hu.max())
            if lo < HU_RANGE[0] or hi > HU_RANGE[1]:  # beyond it the property fits overflow into NaN
                raise UsgenInputError(self.source, f"CT values {lo:g}..{hi:g} HU (after --hu-offset {self.hu_offset:g}) "
                                                   f"lie outside {HU_RANGE[0]:g}..{HU_RANGE[1]:g} HU: not a CT in "
                                                   "Hounsfield units (or set --hu-offset)")
            p = hu_to_properties(hu)
            z, alpha, amp, dens = p["impedance"], p["attenuation"], p["scatter_amplitude"], p["scatter_density"]
            labels = hu_to_labels(hu)
        else:
            self.hu_offset = 0.0
            if not np.issubdtype(arr.dtype, np.integer):
                if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                    raise UsgenInputError(self.source, "label map holds non-integer values")
            labels = arr.astype(np.int64)
            if labels.min() < 0 or labels.max() >= len(TISSUES):
                raise UsgenInputError(self.source, f"label map holds values outside the tissue table 0..{len(TISSUES) - 1} "
                                                   f"(found {int(labels.min())}..{int(labels.max())})")
            z, alpha = lookup(labels, "impedance"), lookup(labels, "attenuation")
            amp, dens = lookup(labels, "scatter_amplitude"), lookup(labels, "scatter_density")
            labels = labels.astype(np.uint8)
        props = np.stack([z - np.float32(WATER.impedance), alpha, amp])
        self.props = torch.from_numpy(props).to(self.device)[None]
        self.density = torch.from_numpy(dens).to(self.device)[None, None]
        self.labels = torch.from_numpy(labels.astype(np.float32)).to(self.device)[None, None]
        self.sparse = bool(np.any(dens < 0.999) and np.any(amp[dens < 0.999] > 0))  # any sparse scatterers?
        self.present_labels = sorted(int(v) for v in np.unique(labels))
        # LPS -> normalised grid coordinates (x=i, y=j, z=k in [-1, 1], align_corners=True);
        # a single-slice axis maps everything to that slice (a 2-D map extends in elevation).
        self.index_to_lps = volume.index_to_physical()
        self.lps_to_index = np.linalg.inv(self.index_to_lps)
        sizes = np.array(volume.shape_ijk, dtype=np.float64)
        scale = np.where(sizes > 1, 2.0 / np.maximum(sizes - 1, 1), 0.0)
        norm = np.eye(4)
        norm[:3, :3] = np.diag(scale)
        norm[:3, 3] = np.where(sizes > 1, -1.0, 0.0)
        self.lps_to_grid = norm @ self.lps_to_index
        self.sizes_ijk = sizes

    @property
    def min_spacing_mm(self) -> float:
        return float(np.min(self.volume.spacing))

    def to_index(self, points_lps: np.ndarray) -> np.ndarray:
        """(..., 3) LPS mm -> (..., 3) continuous voxel indices (i, j, k)."""
        p = np.asarray(points_lps, dtype=np.float64)
        return p @ self.lps_to_index[:3, :3].T + self.lps_to_index[:3, 3]

    def contains(self, points_lps: np.ndarray, margin_voxels: float = 0.5) -> np.ndarray:
        """Whether each LPS point lies inside the volume's voxel box (grown by ``margin_voxels``)."""
        idx = self.to_index(points_lps)
        lo, hi = -0.5 - margin_voxels, self.sizes_ijk - 0.5 + margin_voxels
        return np.all((idx >= lo) & (idx <= hi), axis=-1)

    def describe(self) -> dict:
        v = self.volume
        # A phantom's name, never a file's path: meta.json may be shared without the input.
        source = f"phantom:{v.meta['phantom']}" if "phantom" in v.meta else "file (path not recorded)"
        return {"kind": v.kind, "source": source, "shape_kji": list(v.array.shape),
                "spacing_mm": [float(s) for s in v.spacing], "origin_lps_mm": [float(o) for o in v.origin],
                "direction": v.direction.tolist(), "hu_offset": self.hu_offset, "labels_present": self.present_labels}
