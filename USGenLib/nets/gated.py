"""Gated 3-D convolutions (Yu et al., free-form inpainting), for video.

Hand-written: MONAI has no gated convolution. A gated convolution computes features and a soft
per-pixel, per-channel gate from the same input, so the network learns to ignore the pixels under
the colour-Doppler overlay and to propagate the B-mode around them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(int(x) for x in v)  # type: ignore[return-value]


class GatedConv3d(nn.Module):
    """(B, C_in, T, H, W) -> (B, C_out, T', H', W'): ``act(conv_f(x)) * sigmoid(conv_g(x))``.

    ``stride`` and ``dilation`` per axis (t, h, w); padding keeps the size for stride 1 ("same").
    Features and gate come from one convolution with 2 x C_out outputs (one kernel launch).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                 stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1, activation: bool = True):
        super().__init__()
        k, s, d = _triple(kernel_size), _triple(stride), _triple(dilation)
        pad = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
        self.conv = nn.Conv3d(in_channels, 2 * out_channels, k, s, pad, d)
        self.act = nn.ELU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, gate = self.conv(x).chunk(2, dim=1)
        return self.act(feat) * torch.sigmoid(gate)


class GatedUp3d(nn.Module):
    """(B, C_in, T, H, W) -> (B, C_out, T, 2H, 2W): nearest upsampling in space, then a gated convolution
    (avoids the checkerboard of transposed convolutions)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3):
        super().__init__()
        self.up = nn.Upsample(scale_factor=(1, 2, 2), mode="nearest")
        self.conv = GatedConv3d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))
