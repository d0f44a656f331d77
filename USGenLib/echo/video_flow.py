"""LVFM: latent video flow matching conditioned on the anatomy latent (the ED frame) and the EF.

A factorised space-time U-Net: per frame, MONAI's diffusion ResNet blocks (2-D convolutions with
the flow-time + EF embedding); across frames, a temporal convolution after each of them and MONAI
self-attention over time at the low resolution. MONAI has no video diffusion network, so the U-Net
around these blocks is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import SABlock
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock, get_timestep_embedding
from torch import nn

from USGenLib.echo.config import EchoConfig
from USGenLib.echo.flow import TIME_SCALE
from USGenLib.nets.gated import batch_as_frames, frames_as_batch


class SpaceTimeBlock(nn.Module):
    """(B, C_in, T, h, w) + per-frame embedding (B, T, E) -> (B, C_out, T, h, w): a MONAI diffusion ResNet
    block on every frame, then a residual temporal convolution (kernel 3 over time)."""

    def __init__(self, in_channels: int, out_channels: int, emb: int, groups: int):
        super().__init__()
        self.spatial = DiffusionUNetResnetBlock(2, in_channels, emb, out_channels, norm_num_groups=groups)
        self.temporal = nn.Sequential(nn.GroupNorm(groups, out_channels), nn.SiLU(),
                                      nn.Conv3d(out_channels, out_channels, (3, 1, 1), padding=(1, 0, 0)))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape[:3]
        y = batch_as_frames(self.spatial(frames_as_batch(x), emb.reshape(b * t, -1)), b)
        return y + self.temporal(y)


class TemporalAttention(nn.Module):
    """(B, C, T, h, w) -> same: MONAI self-attention along time at every pixel, residual."""

    def __init__(self, channels: int, groups: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = SABlock(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        seq = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        out = self.attn(seq).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return x + out


class LatentVideoFlow(nn.Module):
    """Velocity of an A-VAE latent video.

    x (B, 4, T, h, w) at flow time t (B,) in [0, 1]; anatomy (B, 4, h, w) the ED-frame latent; ef (B,)
    percent; keep_anatomy, keep_ef (B,) bool (False drops that condition) -> (B, 4, T, h, w) velocity.

    The EF enters every frame's embedding together with that frame's place in the clip: how far the
    LV has contracted depends on both, and a per-frame embedding lets each block scale the wall's
    motion directly instead of learning the product from a clip-wide one.
    """

    def __init__(self, config: EchoConfig):
        super().__init__()
        c0, c1 = config.lvfm_channels
        lat, g = config.latent_channels, config.norm_groups
        emb = 4 * c0
        self.c0 = c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.frame_mlp = nn.Sequential(nn.Linear(2 * c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.null_ef = nn.Parameter(torch.zeros(c0))
        self.inp = nn.Conv3d(2 * lat, c0, (1, 3, 3), padding=(0, 1, 1))
        self.down0 = SpaceTimeBlock(c0, c0, emb, g)
        self.downsample = nn.Conv3d(c0, c1, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.mid = SpaceTimeBlock(c1, c1, emb, g)
        self.attn = TemporalAttention(c1, g)
        self.mid2 = SpaceTimeBlock(c1, c1, emb, g)
        self.up0 = SpaceTimeBlock(c1 + c0, c0, emb, g)
        self.out = nn.Sequential(nn.GroupNorm(g, c0), nn.SiLU(), nn.Conv3d(c0, lat, (1, 3, 3), padding=(0, 1, 1)))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def embedding(self, t: torch.Tensor, ef: torch.Tensor, keep_ef: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, T, E): flow time + MLP(frame position, EF or the learned 'dropped' vector)."""
        b = len(t)
        ef_code = get_timestep_embedding(ef.float() * 10, self.c0)                # 0.1 % EF resolution
        ef_code = torch.where(keep_ef[:, None], ef_code, self.null_ef.expand_as(ef_code))
        pos = get_timestep_embedding(torch.arange(frames, device=t.device) * 30, self.c0)
        joint = torch.cat([pos[None].expand(b, -1, -1), ef_code[:, None].expand(-1, frames, -1)], -1)
        return self.time_mlp(get_timestep_embedding(t * TIME_SCALE, self.c0))[:, None] + self.frame_mlp(joint)

    def forward(self, x: torch.Tensor, t: torch.Tensor, anatomy: torch.Tensor, ef: torch.Tensor,
                keep_anatomy: torch.Tensor, keep_ef: torch.Tensor) -> torch.Tensor:
        b, _, frames, h, w = x.shape
        emb = self.embedding(t, ef, keep_ef, frames)
        anat = anatomy * keep_anatomy.view(-1, 1, 1, 1).to(anatomy.dtype)
        y = self.inp(torch.cat([x, anat[:, :, None].expand(-1, -1, frames, -1, -1)], 1))
        skip = self.down0(y, emb)
        y = self.mid(self.downsample(skip), emb)
        y = self.mid2(self.attn(y), emb)
        y = F.interpolate(y, size=(frames, h, w), mode="nearest")
        return self.out(self.up0(torch.cat([y, skip], 1), emb))
