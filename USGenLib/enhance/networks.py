"""The pix2pix networks of the enhancement paper: an 8-level U-Net generator and a 70x70 PatchGAN,
sized by a config; plus the anatomy network (a segmenter trained on simulations) whose features the
Frechet distance uses and whose Dice checks that translation keeps the anatomy.

Input variants (the paper's ablation): M = low-quality image + FoV mask; MS = + segmentation (one
channel per tissue of the simulation's tissue table); MSA = + integral attenuation map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
from monai.networks.layers import SkipConnection
from monai.networks.nets import BasicUNet, PatchDiscriminator

from USGenLib.simulation.tissues import TISSUES

VARIANTS = ("M", "MS", "MSA")
N_TISSUES = len(TISSUES)


def input_channels(variant: str) -> int:
    """Channels the generator takes: image + FoV mask, then one-hot tissues (S), then attenuation (A)."""
    return 2 + (N_TISSUES if "S" in variant else 0) + (1 if "A" in variant else 0)


@dataclass(frozen=True)
class EnhanceConfig:
    name: str
    variant: str = "MSA"
    ngf: int = 8                  # generator channels at the first level (pix2pix: 64)
    levels: int = 8               # stride-2 levels: an input side must be a multiple of 2**levels
    ndf: int = 16                 # discriminator channels at the first layer (pix2pix: 64)
    patch: int = 256              # training crop side (the paper: 512 of 1000x1386 frames)
    batch: int = 4
    steps: int = 2200
    lr: float = 2e-4
    l1_weight: float = 100.0      # lambda of the paper
    dropout: float = 0.5          # pix2pix's noise: the three innermost decoder blocks
    seg_features: tuple[int, ...] = (8, 16, 32, 64, 64, 8)  # anatomy network (MONAI BasicUNet)
    seg_steps: int = 1500
    seg_patch: int = 128          # anatomy network's training crop
    nce_weight: float = 1.0       # unpaired: PatchNCE
    anatomy_weight: float = 1.0   # unpaired: segmentation kept by the frozen anatomy network
    unpaired_steps: int = 600

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EnhanceConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "seg_features" in known:
            known["seg_features"] = tuple(known["seg_features"])
        return cls(**known)


CONFIGS = {
    "tiny": EnhanceConfig("tiny", ngf=4, levels=6, ndf=8, patch=64, batch=2, steps=40,
                          seg_features=(4, 4, 8, 8, 8, 4), seg_steps=30, seg_patch=64, unpaired_steps=30),
    "default": EnhanceConfig("default"),
}


def config_for(name: str, variant: str) -> EnhanceConfig:
    return replace(CONFIGS[name], variant=variant)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net generator (``unet_256`` at 8 levels): 4x4 stride-2 convolutions down with
    LeakyReLU(0.2), transposed convolutions up with ReLU, instance norm, skip connections at every
    level, dropout in the three innermost decoder blocks, tanh output.

    Written here from MONAI's SkipConnection because MONAI's UNet cannot express it: its same-padding
    needs odd kernels (pix2pix downsamples with 4x4), and it uses one activation for both paths.

    Input (B, in_channels, H, W) with H and W multiples of 2**levels; output (B, 1, H, W) in [-1, 1].
    """

    def __init__(self, in_channels: int, ngf: int = 8, levels: int = 8, dropout: float = 0.5):
        super().__init__()
        widths = [ngf * min(2 ** i, 8) for i in range(levels)]
        block: nn.Module | None = None
        for i in reversed(range(levels)):
            outer = in_channels if i == 0 else widths[i - 1]
            inner = widths[i]
            down = nn.Conv2d(outer, inner, 4, 2, 1, bias=False)
            up = nn.ConvTranspose2d(inner if block is None else 2 * inner, 1 if i == 0 else outer, 4, 2, 1,
                                    bias=i == 0)
            if i == 0:  # outermost: no activation before the first convolution, tanh after the last
                block = nn.Sequential(down, block, nn.ReLU(), up, nn.Tanh())
            elif block is None:  # innermost (1x1 at 256): no norm on a single pixel
                block = SkipConnection(nn.Sequential(nn.LeakyReLU(0.2), down, nn.ReLU(), up, nn.InstanceNorm2d(outer)))
            else:
                drop = [nn.Dropout(dropout)] if i >= levels - 4 and dropout > 0 else []
                block = SkipConnection(nn.Sequential(nn.LeakyReLU(0.2), down, nn.InstanceNorm2d(inner), block,
                                                     nn.ReLU(), up, nn.InstanceNorm2d(outer), *drop))
        self.net = block
        self.multiple = 2 ** levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def generator(config: EnhanceConfig) -> UNetGenerator:
    return UNetGenerator(input_channels(config.variant), config.ngf, config.levels, config.dropout)


def discriminator(config: EnhanceConfig, in_channels: int) -> PatchDiscriminator:
    """The 70x70 PatchGAN (3 stride-2 layers of 4x4 convolutions, instance norm): MONAI's PatchDiscriminator.
    Input (B, in_channels, H, W); output: the list of layer features, the patch logits last."""
    return PatchDiscriminator(spatial_dims=2, channels=config.ndf, in_channels=in_channels, out_channels=1,
                              num_layers_d=3, kernel_size=4, norm="INSTANCE", padding=1)


class AnatomyNet(nn.Module):
    """Segmenter trained on simulations (MONAI BasicUNet): tissue logits (B, N_TISSUES, H, W) from a grey
    image (B, 1, H, W), H and W multiples of 16. ``features(x)`` gives the (B, C) global average of its
    deepest encoder block: the embedding the project's Frechet distance is computed on (in place of a
    downloaded Inception)."""

    def __init__(self, features: tuple[int, ...] = (8, 16, 32, 64, 64, 8)):
        super().__init__()
        self.unet = BasicUNet(spatial_dims=2, in_channels=1, out_channels=N_TISSUES, features=tuple(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unet
        deepest = u.down_4(u.down_3(u.down_2(u.down_1(u.conv_0(x)))))
        return deepest.mean(dim=(2, 3))


def anatomy_net(config: EnhanceConfig) -> AnatomyNet:
    return AnatomyNet(config.seg_features)


def load_anatomy(path: str | Path | None, device: torch.device) -> tuple[AnatomyNet, Path]:
    """The anatomy network (bundled unless ``path``), frozen, in eval mode."""
    from USGenLib.train.weights import load_network

    model, _, path = load_network(path, "enhance_anatomy",
                                  lambda d: AnatomyNet(tuple(d.get("seg_features", EnhanceConfig.seg_features))),
                                  ("enhance", "anatomy"), "anatomy network", option="--anatomy-weights")
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, path
