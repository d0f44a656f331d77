"""Scatterer texture fixed in the volume's physical space, so a sweep sees the same scatterers.

Two periodic lattices of complex Gaussian scatterer strengths (64^3 and 59^3 cells, periods that
never line up within a body) are sampled trilinearly with ``grid_sample`` at any LPS point and
summed. Trilinear interpolation of white noise lowers its variance between lattice nodes; each
sample is divided by sqrt(sum of squared interpolation weights), which makes the field exactly
unit-variance everywhere (hand-written: grid_sample returns values, not weights). The result is a
circular complex Gaussian field: after the point-spread function its magnitude is Rayleigh
distributed (fully developed speckle, envelope SNR 1.91). A third, real channel, sampled on a
lattice ``mask_scale`` times coarser, gives a uniform variate per position for the scatterer-density
mask (sparse scatterers then cluster at about a millimetre, like septa in fat, rather than
flickering sample by sample).
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
    ``sample(points)``: (..., 3) LPS mm -> (real, imag) tensors of shape (...).
    ``uniform(points)``: (..., 3) LPS mm -> uniform variates in (0, 1), shape (...).
    """

    def __init__(self, seed: int, cell_mm: float, device: str | torch.device = "cpu", mask_scale: float = 3.0):
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        self.cell_mm = float(cell_mm)
        self.mask_scale = float(mask_scale)
        tiles = [_periodic_tile(gen, 3 if i == 0 else 2, n).to(device) for i, n in enumerate(_SIZES)]
        self.tiles = [tiles[0][:, :2].contiguous(), tiles[1]]
        self.mask_tile = tiles[0][:, 2:].contiguous()

    @staticmethod
    def _lookup(tile: torch.Tensor, n: int, q: torch.Tensor) -> torch.Tensor:
        """Unit-variance trilinear sample of a periodic tile at lattice coordinates q (1,1,1,N,3) -> (C, N)."""
        qm = torch.remainder(q + 0.37 * n, float(n))  # offset: a different phase per tile
        frac = qm - torch.floor(qm)
        norm = ((1.0 - frac) ** 2 + frac ** 2).prod(-1).rsqrt_()  # (1, 1, 1, N)
        v = F.grid_sample(tile, qm * (2.0 / n) - 1.0, mode="bilinear", padding_mode="border", align_corners=True)
        return v[0, :, 0, 0] * norm[0, 0]

    def sample(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = points.shape[:-1]
        q = points.reshape(1, 1, 1, -1, 3) / self.cell_mm
        v0 = self._lookup(self.tiles[0], _SIZES[0], q)
        v1 = self._lookup(self.tiles[1], _SIZES[1], q)
        scale = len(_SIZES) ** -0.5
        return ((v0[0] + v1[0]) * scale).reshape(shape), ((v0[1] + v1[1]) * scale).reshape(shape)

    def uniform(self, points: torch.Tensor) -> torch.Tensor:
        q = points.reshape(1, 1, 1, -1, 3) / (self.cell_mm * self.mask_scale)
        return torch.special.ndtr(self._lookup(self.mask_tile, _SIZES[0], q)[0]).reshape(points.shape[:-1])
