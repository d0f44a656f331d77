"""The networks that label every generated clip: an LV segmenter per frame (MONAI UNet) and an EF
regressor on the video (MONAI 3-D ResNet); and the EF measured from per-frame masks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet, UNet
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
    """Video (B, 1, T, H, W) in [0, 1] -> EF in percent (B,); ``features`` -> (B, F) the pooled features
    (what the Frechet distances compare). Runs at half resolution: EF is the LV's size change."""

    def __init__(self, config: EchoConfig):
        super().__init__()
        planes = list(config.ef_planes)
        self.net = ResNet("basic", [1, 1, 1, 1], planes, spatial_dims=3, n_input_channels=1, conv1_t_size=3,
                          conv1_t_stride=1, no_max_pool=True, feed_forward=False)
        self.head = nn.Linear(planes[-1], 1)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(F.avg_pool3d(video, (1, 2, 2)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return 50.0 + 25.0 * self.head(self.features(video))[:, 0]


def volume_method(view: str) -> str:
    """Discs along the long axis for A4C and PLAX; a sphere of the area for the short-axis view."""
    return "sphere" if view == "PSAX" else "simpson"


@torch.no_grad()
def segment_frames(seg: LVSegmenter, frames: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """(T, H, W) float in [0, 1] -> (T, H, W) uint8 LV masks."""
    out = [(seg(frames[i:i + chunk, None]) > 0)[:, 0] for i in range(0, len(frames), chunk)]
    return torch.cat(out).to(torch.uint8).cpu().numpy()


def mask_ef(masks: np.ndarray, view: str, pixel_mm: float) -> dict:
    """EF from per-frame masks with the view's volume method: ef, ed_frame, es_frame, edv, esv."""
    ef, ed, es, edv, esv = ejection_fraction_from_masks(masks.astype(bool), pixel_mm, volume_method(view))
    return {"ef": ef, "ed_frame": ed, "es_frame": es, "edv": edv, "esv": esv}
