"""Image-similarity figures on NumPy frames, computed with MONAI's metrics.

Frames are grey in [0, 1] (or uint8, scaled); a cine's figure is the mean over its frames, as the
CFD paper reports SSIM per video.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import FIDMetric, PSNRMetric, SSIMMetric
from monai.metrics.regression import compute_ssim_and_cs

_SSIM = SSIMMetric(spatial_dims=2, data_range=1.0)  # 11x11 Gaussian window, sigma 1.5
_PSNR = PSNRMetric(max_val=1.0)


def _frames(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    t = torch.as_tensor(a.astype(np.float32) / scale)
    return t.reshape(-1, 1, *t.shape[-2:])


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over frames of two (T, H, W) or (H, W) grey arrays (11x11 Gaussian window, sigma 1.5); frames
    smaller than 11 pixels give NaN. With ``mask`` (H, W), the SSIM map is averaged over the windows
    centred in the mask only (a sector's black corners would otherwise count as perfect)."""
    x, y = _frames(a), _frames(b)
    if min(x.shape[-2:]) < 11:
        return float("nan")
    if mask is None:
        return float(_SSIM(x, y).mean())
    ssim_map, _ = compute_ssim_and_cs(x, y, spatial_dims=2, kernel_size=(11, 11), kernel_sigma=(1.5, 1.5))
    inner = torch.as_tensor(np.asarray(mask, bool)[5:-5, 5:-5])  # the map is "valid" convolution: 5 px less per side
    return float(ssim_map[:, 0][:, inner].mean()) if inner.any() else float("nan")


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean PSNR (dB) over frames; identical frames are capped at 100 dB instead of infinity. With
    ``mask`` (H, W), the mean squared error is taken over the mask's pixels only."""
    x, y = _frames(a), _frames(b)
    if mask is None:
        return float(_PSNR(x, y).clamp(max=100.0).mean())
    inner = torch.as_tensor(np.asarray(mask, bool))
    mse = ((x - y) ** 2)[:, 0][:, inner].mean(dim=1)
    return float((10 * torch.log10(1.0 / mse.clamp(min=1e-10))).clamp(max=100.0).mean())


def patch_kl(reference: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None, patch: int = 32,
             bins: int = 50) -> float:
    """The enhancement paper's patch-KL: KL(h_ref || h_other) of ``bins``-bin intensity histograms in
    non-overlapping ``patch`` x ``patch`` patches, averaged over the patches (of every frame) that lie
    at least half inside ``mask``. Histograms are Laplace-smoothed (one count added per bin), so an
    empty bin costs a finite amount; identical inputs give exactly 0. (MONAI has no histogram KL.)"""
    x, y = _frames(reference)[:, 0], _frames(other)[:, 0]
    T, H, W = x.shape
    h, w = H // patch * patch, W // patch * patch

    def patches(t: torch.Tensor) -> torch.Tensor:  # (T * P, patch * patch)
        return t[:, :h, :w].reshape(T, h // patch, patch, w // patch, patch).permute(0, 1, 3, 2, 4).reshape(
            -1, patch * patch)

    px, py = patches(x), patches(y)
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask, np.float32))[None].expand(T, H, W)
        keep = patches(m).mean(dim=1) >= 0.5
        px, py = px[keep], py[keep]
    if len(px) == 0:
        return float("nan")
    idx = lambda v: (v.clamp(0, 1) * bins).long().clamp(max=bins - 1)  # noqa: E731
    hx = torch.zeros(len(px), bins).scatter_add_(1, idx(px), torch.ones_like(px)) + 1
    hy = torch.zeros(len(py), bins).scatter_add_(1, idx(py), torch.ones_like(py)) + 1
    hx, hy = hx / hx.sum(1, keepdim=True), hy / hy.sum(1, keepdim=True)
    return float((hx * (hx / hy).log()).sum(1).mean())


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature vectors (N, C) (MONAI's FIDMetric;
    the features come from a network the project trains, not a downloaded Inception)."""
    a = torch.as_tensor(np.asarray(features_a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(features_b), dtype=torch.float64)
    return float(FIDMetric()(a, b))
