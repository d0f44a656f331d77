"""The CFD-removal networks of the paper: coarse gated 3-D network, post-processing bridge, 3-D refinement.

Every network takes clips (B, C, T, H, W) in [0, 1] whose H and W are multiples of 8, with two
input channels: the grey frame with the colour-Doppler pixels zeroed, and the CFD mask (1 = hidden).
Working in grey + mask (not RGB) keeps the networks independent of any vendor's colour map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from USGenLib.nets import GatedConv3d, GatedUp3d, spectral_patch_discriminator
from USGenLib.nets.gated import batch_as_frames, frames_as_batch


@dataclass(frozen=True)
class CFDConfig:
    """Network sizes, training crops and losses. ``tiny`` trains in the test suite; ``default`` is bundled."""

    name: str = "default"
    coarse_channels: int = 16
    refine_channels: tuple[int, ...] = (8, 16, 32)
    disc_channels: int = 16
    disc_layers: int = 3
    # training
    clip_frames: int = 8
    crop: int = 96
    batch: int = 4
    lr: float = 2e-4
    coarse_steps: int = 4000           # coarse network alone, then the refinement GAN with coarse frozen
    refine_steps: int = 1000
    l1_mask_weight: float = 10.0       # extra L1 inside the mask (the paper's L1-mask term)
    free_form: float = 0.3             # share of training clips with free-form holes over tissue
    # learned mask (the paper's helper U-Net), a network of its own: `usgen cfd train --network mask`
    mask_channels: tuple[int, ...] = (8, 16, 32)
    mask_steps: int = 1500
    adv_weight: float = 0.05
    fm_weight: float = 1.0             # discriminator feature matching (in place of a perceptual loss)
    # bridge (post-processing between coarse and refinement)
    speckle: float = 0.15              # multiplicative noise std injected in the mask
    sharpen: float = 0.6               # unsharp-mask amount
    # inference
    size: int = 256                    # a display is padded square and scaled to this many pixels
    window: int = 16                   # frames per temporal window
    overlap: int = 4                   # frames shared by neighbouring windows (cross-faded)
    margin: int = 16                   # context pixels around the mask's bounding box

    def to_dict(self) -> dict:
        d = asdict(self)
        d["refine_channels"] = list(self.refine_channels)
        d["mask_channels"] = list(self.mask_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CFDConfig":
        d = dict(d)
        d["refine_channels"] = tuple(d.get("refine_channels", cls.refine_channels))
        d["mask_channels"] = tuple(d.get("mask_channels", cls.mask_channels))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


CONFIGS = {
    "tiny": CFDConfig(name="tiny", coarse_channels=4, refine_channels=(4, 8), disc_channels=4, disc_layers=2,
                      clip_frames=4, crop=32, batch=2, lr=1e-3, coarse_steps=4, refine_steps=4, mask_channels=(4, 8), mask_steps=4, window=8, overlap=2, margin=8),
    "default": CFDConfig(),
}


class CoarseNet(nn.Module):
    """Gated spatio-temporal encoder-decoder: (B, 2, T, H, W) grey+mask -> (B, 1, T, H, W) B-mode estimate
    (unbounded; ``composite`` clips it to [0, 1]).

    Runs at half the input resolution (H, W multiples of 8): what it restores is structure, which is
    smooth; the bridge and the refinement add the full-resolution texture. Dilated gated convolutions
    at 1/8 of the input give the context a large colour region needs; encoder and bottleneck look
    across 3 frames, the decoder frame by frame.
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        c = channels
        self.encoder = nn.Sequential(
            GatedConv3d(2, c, 5),
            GatedConv3d(c, 2 * c, 3, stride=2),
            GatedConv3d(2 * c, 4 * c, 3, stride=2),
        )
        self.context = nn.Sequential(
            GatedConv3d(4 * c, 4 * c, 3, dilation=2, temporal_kernel=1),
            GatedConv3d(4 * c, 4 * c, 3, dilation=4, temporal_kernel=1),
            GatedConv3d(4 * c, 4 * c, 3, dilation=8, temporal_kernel=1),
            GatedConv3d(4 * c, 4 * c, 3),
        )
        self.decoder = nn.Sequential(
            GatedUp3d(4 * c, 2 * c),
            GatedUp3d(2 * c, c),
            # A plain linear output: a gate or sigmoid here can saturate at black, where the
            # blood-dark targets pull it, and stop learning (seen in training).
            nn.Conv3d(c, 1, (1, 3, 3), padding=(0, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = F.avg_pool3d(x, (1, 2, 2))
        y = self.decoder(self.context(self.encoder(half)))
        return F.interpolate(y, scale_factor=(1, 2, 2), mode="trilinear")


class RefineNet(nn.Module):
    """Spatio-temporal encoder-decoder adding a residual: (B, 2, T, H, W) bridged+mask -> (B, 1, T, H, W)
    (unbounded; ``composite`` clips it).

    A temporal convolution across 3 frames, then MONAI's UNet on every frame: the (2+1)-D
    factorisation of a 3-D encoder-decoder (fast on the CPU, see nets/gated.py). No normalisation
    layers, so a crop of any size behaves as in training.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32)):
        super().__init__()
        self.temporal = nn.Conv3d(2, channels[0], (3, 1, 1), padding=(1, 0, 0))
        self.unet = UNet(spatial_dims=2, in_channels=channels[0], out_channels=1, channels=channels,
                         strides=[2] * (len(channels) - 1), num_res_units=1, norm=None,
                         act=("LEAKYRELU", {"negative_slope": 0.2}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.temporal(x), 0.2)
        return x[:, :1] + batch_as_frames(self.unet(frames_as_batch(h)), x.shape[0])


class MaskNet(nn.Module):
    """The learned part of the CFD mask: (N, 4, H, W) RGB in [0, 1] + the colour rule's mask -> (N, 1, H, W)
    logits of "replaced by the colour overlay", H and W multiples of 4.

    The colour rule finds every coloured pixel; what it cannot find are the grey parts of an overlay
    (the colour box outline, grey colour-mode text). A small MONAI UNet per frame learns them from
    the data set's masks; inference adds its pixels to the rule's near the colour only.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32)):
        super().__init__()
        self.unet = UNet(spatial_dims=2, in_channels=4, out_channels=1, channels=channels,
                         strides=[2] * (len(channels) - 1), num_res_units=1, norm=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)


def discriminator(config: CFDConfig) -> nn.Module:
    """3-D PatchGAN with spectral norm on (image, mask): (B, 2, T, H, W) -> list of features."""
    return spectral_patch_discriminator(3, 2, config.disc_channels, config.disc_layers)


def composite(estimate: torch.Tensor, grey: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known pixels from the input, the estimate (clipped to [0, 1]) only under the mask."""
    return grey * (1 - mask) + estimate.clamp(0.0, 1.0) * mask


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable spatial Gaussian blur of (B, C, T, H, W), per frame."""
    radius = max(1, int(round(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    b, c, t, h, w = x.shape
    y = x.reshape(b * c * t, 1, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(b, c, t, h, w)


def bridge(coarse: torch.Tensor, grey: torch.Tensor, mask: torch.Tensor, config: CFDConfig,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """The paper's post-processing between coarse and refinement, applied under the mask only.

    Edge enhancement (unsharp mask), histogram stretch (the fill's 1-99 % range stretched towards the
    known pixels' range, at most 2x: the coarse network's blur flattens contrast) and speckle injection
    (multiplicative, spatially correlated noise: gated convolutions suppress high frequencies).
    All (B, 1, T, H, W) in [0, 1].
    """
    x = composite(coarse, grey, mask)
    x = x + config.sharpen * (x - _gaussian_blur(x, 1.5))
    inside, outside = mask > 0.5, mask <= 0.5
    for i in range(x.shape[0]):
        fill, known = x[i][inside[i]], grey[i][outside[i]]
        if fill.numel() > 16 and known.numel() > 16:
            q = torch.tensor([0.01, 0.99], dtype=x.dtype, device=x.device)
            f_lo, f_hi = torch.quantile(fill[:: max(1, fill.numel() // 65536)], q)
            k_lo, k_hi = torch.quantile(known[:: max(1, known.numel() // 65536)], q)
            gain = torch.clamp((k_hi - k_lo) / torch.clamp(f_hi - f_lo, min=1e-3), 1.0, 2.0)
            centre = fill.mean()
            x[i] = torch.where(inside[i], centre + (x[i] - centre) * gain, x[i])
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    noise = _gaussian_blur(noise, 0.7)
    noise = noise / noise.std().clamp(min=1e-6)
    x = x * (1 + config.speckle * noise)
    return composite(x.clamp(0, 1), grey, mask)


class CFDRemover(nn.Module):
    """The whole pipeline as one module: (B, 2, T, H, W) grey+mask -> (B, 1, T, H, W) B-mode composite.

    ``stage`` chooses how far to run it (the ablation): "coarse", "bridge" or "full".
    """

    def __init__(self, config: CFDConfig):
        super().__init__()
        self.config = config
        self.coarse = CoarseNet(config.coarse_channels)
        self.refine = RefineNet(config.refine_channels)

    def forward(self, x: torch.Tensor, stage: str = "full", generator: torch.Generator | None = None) -> torch.Tensor:
        grey, mask = x[:, :1], x[:, 1:2]
        out = composite(self.coarse(x), grey, mask)
        if stage == "coarse":
            return out
        out = bridge(out, grey, mask, self.config, generator)
        if stage == "bridge":
            return out
        return composite(self.refine(torch.cat([out, mask], 1)), grey, mask)
