"""Scatterer texture fixed in the volume's physical space, so a sweep sees the same scatterers.

Two periodic lattices of complex Gaussian scatterer strengths (64^3 and 59^3 cells, periods that
never line up within a body) are sampled trilinearly with ``grid_sample`` at any LPS point and
summed. Trilinear interpolation of white noise lowers its variance between lattice nodes; each
sample is divided by sqrt(sum of squared interpolation weights), which makes the field exactly
unit-variance everywhere (hand-written: grid_sample returns values, not weights). The result is a
circular complex Gaussian field: after the point-spread function its magnitude is Rayleigh
distributed (fully developed speckle, envelope SNR 1.91). A third, real channel gives a uniform
variate per position for the scatterer-density mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SIZES = (64, 59)


def _periodic_tile(gen: torch.Generator, channels: int, n: int) -> torch.Tensor:
    t = torch.randn((channels, n, n, n), generator=gen, dtype=torch.float32)
    t = torch.cat([t, t[:, :1]], 1)
    t = torch.cat([t, t[:, :, :1]], 2)
    t = torch.cat([t, t[:, :, :, :1]], 3)
    return t[None].contiguous()  # (1, C, n+1, n+1, n+1): last plane repeats the first


class ScattererTexture:
    """Complex scatterer field on a lattice of ``cell_mm`` fixed in LPS space.

    seed:    integer seed (same seed, same texture).
    cell_mm: lattice spacing in mm.
    ``sample(points)``: (..., 3) LPS mm -> (real, imag, uniform) tensors of shape (...).
    """

    def __init__(self, seed: int, cell_mm: float, device: str | torch.device = "cpu"):
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        self.cell_mm = float(cell_mm)
        self.tiles = [_periodic_tile(gen, 3 if i == 0 else 2, n).to(device) for i, n in enumerate(_SIZES)]

    def sample(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = points.shape[:-1]
        q = points.reshape(1, 1, 1, -1, 3) / self.cell_mm
        re = im = None
        uni = None
        for tile, n in zip(self.tiles, _SIZES):
            qm = torch.remainder(q + 0.37 * n, float(n))  # offset: a different phase per tile
            frac = qm - torch.floor(qm)
            norm = ((1.0 - frac) ** 2 + frac ** 2).prod(-1).rsqrt_()  # (1, 1, 1, N)
            v = F.grid_sample(tile, qm * (2.0 / n) - 1.0, mode="bilinear", padding_mode="border",
                              align_corners=True)[0, :, 0, 0] * norm[0, 0]  # (C, N)
            re = v[0] if re is None else re + v[0]
            im = v[1] if im is None else im + v[1]
            if uni is None and v.shape[0] > 2:
                uni = torch.special.ndtr(v[2])
        scale = len(_SIZES) ** -0.5
        return (re * scale).reshape(shape), (im * scale).reshape(shape), uni.reshape(shape)
