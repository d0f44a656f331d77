"""The networks that label every generated clip: an LV segmenter per frame (MONAI UNet) and an EF
regressor on the video (a MONAI UNet per frame, EF from the ratio of the LV volumes it finds); and the
EF measured from per-frame masks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from USGenLib.datasets.lv_measure import ejection_fraction_from_masks
from USGenLib.echo.config import EchoConfig


class LVSegmenter(nn.Module):
    """Frames (B, 1, H, W) in [0, 1] -> LV logits (B, 1, H, W)."""

    def __init__(self, config: EchoConfig):
        super().__init__()
        ch = tuple(config.seg_channels)
        self.net = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=ch, strides=(2,) * (len(ch) - 1),
                        num_res_units=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EFRegressor(nn.Module):
    """Video (B, 1, T, H, W) in [0, 1] -> EF in percent (B,).

    Built the way EF is defined: a 2-D MONAI UNet at half resolution maps every frame to an LV
    probability map; its area A_t gives the frame's volume score h_t = k log A_t (k learnt, from 1.5:
    a ventricle that contracts alike in every direction), and EF = 100 (1 - exp(min_t h - max_t h)).
    Training fits the EF and, per frame, the map to the clip's LV masks (Dice); a 3-D ResNet, and a
    2-D one fitted to EF alone, memorised the few hundred training hearts instead of generalising.
    ``features`` (B, 2F: mean and spread over time of 8x8 pooled maps) is what the Frechet distances
    compare; ``frame_features`` (B, T, F) the same per frame."""

    def __init__(self, config: EchoConfig):
        super().__init__()
        ch = tuple(config.ef_channels)
        self.net = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=ch, strides=(2,) * (len(ch) - 1),
                        num_res_units=1)
        self.exponent = nn.Parameter(torch.tensor(1.5))

    def maps(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, H/2, W/2) LV logits of every frame."""
        b, _, t, h, w = video.shape
        frames = F.avg_pool2d(video.transpose(1, 2).reshape(b * t, 1, h, w), 2)
        return self.net(frames).view(b, t, h // 2, w // 2)

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.sigmoid(self.maps(video)), 8).flatten(2)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        f = self.frame_features(video)
        return torch.cat([f.mean(1), f.std(1, unbiased=False)], 1)

    def log_volumes(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, h, w) maps -> (B, T) log-volume scores."""
        return self.exponent * torch.log(torch.sigmoid(logits).sum((2, 3)) + 1.0)

    @staticmethod
    def ef_of(log_volumes: torch.Tensor) -> torch.Tensor:
        return 100.0 * (1.0 - torch.exp(log_volumes.min(1).values - log_volumes.max(1).values))

    def forward(self, video: torch.Tensor, per_frame: bool = False) -> torch.Tensor:
        """EF (B,); with ``per_frame`` the (B, T, H/2, W/2) LV logits it comes from (training goes through
        forward so DistributedDataParallel sees it)."""
        logits = self.maps(video)
        return logits if per_frame else self.ef_of(self.log_volumes(logits))


def volume_method(view: str) -> str:
    """Discs along the long axis for A4C and PLAX; a sphere of the area for the short-axis view."""
    return "sphere" if view == "PSAX" else "simpson"


def largest_blob(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> the largest 4-connected blob. scipy's labelling: MONAI's
    KeepLargestConnectedComponent needs scikit-image, which nothing else here does."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


@torch.no_grad()
def segment_frames(seg: LVSegmenter, frames: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """(T, H, W) float in [0, 1] -> (T, H, W) uint8 LV masks, each frame's largest blob only (a stray
    speck in another chamber would add to the disc volumes)."""
    out = torch.cat([(seg(frames[i:i + chunk, None]) > 0)[:, 0] for i in range(0, len(frames), chunk)]).cpu().numpy()
    return np.stack([largest_blob(m) for m in out]).astype(np.uint8)


def mask_ef(masks: np.ndarray, view: str, pixel_mm: float) -> dict:
    """EF from per-frame masks with the view's volume method: ef, ed_frame, es_frame, edv, esv."""
    ef, ed, es, edv, esv = ejection_fraction_from_masks(masks.astype(bool), pixel_mm, volume_method(view))
    return {"ef": ef, "ed_frame": ed, "es_frame": es, "edv": edv, "esv": esv}
