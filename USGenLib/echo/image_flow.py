"""LIFM: latent image flow matching. MONAI's DiffusionModelUNet predicts the velocity of an A-VAE
latent; the view enters as a class embedding (``num_class_embeds``: the three views and a
"dropped" class) and the LV mask by concatenation at latent resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from USGenLib.echo.config import VIEWS, EchoConfig
from USGenLib.echo.flow import TIME_SCALE

NULL_VIEW = len(VIEWS)


def mask_condition(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) {0, 1} LV mask -> (B, 1, H/4, W/4) in [-1, 1]; 0 where the condition is dropped."""
    low = F.avg_pool2d(mask.float(), 4) * 2 - 1
    return low * keep.view(-1, 1, 1, 1).to(low.dtype)


class LatentImageFlow(nn.Module):
    """Velocity of an A-VAE latent.

    x (B, 4, h, w) state at flow time t (B,) in [0, 1]; view (B,) index into VIEWS; mask (B, 1, 4h, 4w)
    the LV mask in {0, 1}; keep (B,) bool, False drops view and mask -> (B, 4, h, w) velocity.
    """

    def __init__(self, config: EchoConfig):
        super().__init__()
        c = config.latent_channels
        self.unet = DiffusionModelUNet(spatial_dims=2, in_channels=c + 1, out_channels=c, num_res_blocks=1,
                                       channels=config.lifm_channels, attention_levels=config.lifm_attention,
                                       norm_num_groups=config.norm_groups, num_head_channels=config.lifm_channels[-1] // 4,
                                       num_class_embeds=len(VIEWS) + 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, view: torch.Tensor, mask: torch.Tensor,
                keep: torch.Tensor) -> torch.Tensor:
        labels = torch.where(keep, view, torch.full_like(view, NULL_VIEW))
        return self.unet(torch.cat([x, mask_condition(mask, keep)], 1), t * TIME_SCALE, class_labels=labels)
