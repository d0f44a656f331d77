"""Image-similarity figures on NumPy frames, computed with MONAI's metrics.

Frames are grey in [0, 1] (or uint8, scaled); a cine's figure is the mean over its frames, as the
CFD paper reports SSIM per video.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric

_SSIM = SSIMMetric(spatial_dims=2, data_range=1.0)  # 11x11 Gaussian window, sigma 1.5
_PSNR = PSNRMetric(max_val=1.0)


def _frames(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    t = torch.as_tensor(a.astype(np.float32) / scale)
    return t.reshape(-1, 1, *t.shape[-2:])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over frames of two (T, H, W) or (H, W) grey arrays (11x11 Gaussian window, sigma 1.5); frames
    smaller than 11 pixels give NaN."""
    x, y = _frames(a), _frames(b)
    if min(x.shape[-2:]) < 11:
        return float("nan")
    return float(_SSIM(x, y).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean PSNR (dB) over frames; identical frames are capped at 100 dB instead of infinity."""
    v = _PSNR(_frames(a), _frames(b)).clamp(max=100.0)
    return float(v.mean())
