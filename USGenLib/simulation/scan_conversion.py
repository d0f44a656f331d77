"""Scan conversion: (samples x scanlines) beam data -> Cartesian pixels, through a map computed once.

The output image has square pixels, its columns along the probe's x (lateral) axis and rows along
y (depth); the field of view is centred horizontally and touches the top edge.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from USGenLib.simulation.probe import Probe


class ScanConverter:
    """Precomputed beam-to-pixel map for one probe, sample count and image size.

    probe:     the transducer (its scanline geometry).
    n_samples: S samples per scanline, at depths (s + 0.5) * depth / S.
    height, width: output size H x W pixels.

    Attributes: ``pixel_mm`` (square pixel size), ``origin_local`` (probe coordinates of pixel
    (0, 0)), ``pixel_local`` (H, W, 3) probe coordinates of every pixel, ``fov`` (H, W) bool.
    ``convert(data)``: (B, C, S, L) -> (B, C, H, W), zero outside the field of view.
    """

    def __init__(self, probe: Probe, n_samples: int, height: int, width: int, device: str | torch.device = "cpu"):
        if height < 2 or width < 2 or n_samples < 2:
            raise ValueError(f"image size and samples must be at least 2, got {height}x{width}, {n_samples} samples")
        self.probe, self.n_samples, self.height, self.width = probe, int(n_samples), int(height), int(width)
        x0, x1, y0, y1 = probe.fov_bounds()
        self.pixel_mm = float(max((x1 - x0) / width, (y1 - y0) / height))
        xs = (x0 + x1) / 2.0 + (np.arange(width) - (width - 1) / 2.0) * self.pixel_mm
        ys = y0 + (np.arange(height) + 0.5) * self.pixel_mm
        self.origin_local = np.array([xs[0], ys[0], 0.0])
        xx, yy = np.meshgrid(xs, ys)  # (H, W)
        self.pixel_local = np.stack([xx, yy, np.zeros_like(xx)], -1)
        depth, line, inside = probe.to_beam(xx, yy)
        self.fov = inside
        self.sample_mm = probe.depth_mm / self.n_samples
        s = depth / self.sample_mm - 0.5
        L = int(probe.n_scanlines)
        grid = np.stack([2.0 * line / (L - 1) - 1.0, 2.0 * s / (self.n_samples - 1) - 1.0], -1)
        self.device = torch.device(device)
        self._grid = torch.as_tensor(grid, dtype=torch.float32, device=self.device)[None]  # (1, H, W, 2)
        self._fov = torch.as_tensor(inside, device=self.device)

    def image_to_probe(self) -> np.ndarray:
        """4x4 matrix: pixel index (i = column, j = row, k) -> probe coordinates (mm)."""
        m = np.eye(4)
        m[0, 0] = m[1, 1] = self.pixel_mm
        m[2, 2] = self.probe.slice_thickness_mm
        m[:3, 3] = self.origin_local
        return m

    def convert(self, data: torch.Tensor) -> torch.Tensor:
        """(B, C, S, L) beam data -> (B, C, H, W) pixels (bilinear), zero outside the FoV."""
        b = data.shape[0]
        out = F.grid_sample(data, self._grid.expand(b, -1, -1, -1), mode="bilinear",
                            padding_mode="border", align_corners=True)
        return out * self._fov
