"""PatchGAN discriminators with spectral normalisation.

MONAI's PatchDiscriminator supplies the network (it returns every layer's features, which the
generators use for feature matching in place of an ImageNet perceptual loss); spectral
normalisation is added with torch's parametrizations, as the CFD paper's 3-D PatchGAN uses.
"""

from __future__ import annotations

import torch
from monai.networks.nets import PatchDiscriminator
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def spectral_patch_discriminator(spatial_dims: int, in_channels: int, channels: int = 32,
                                 num_layers_d: int = 3) -> PatchDiscriminator:
    """(B, in_channels, [T,] H, W) -> list of features, the last one patch logits.

    No normalisation layers: spectral normalisation already bounds each layer's Lipschitz constant
    and batch statistics of tiny CPU batches are noise.
    """
    disc = PatchDiscriminator(spatial_dims=spatial_dims, channels=channels, in_channels=in_channels,
                              out_channels=1, num_layers_d=num_layers_d, kernel_size=3, norm=None, bias=True)
    for module in list(disc.modules()):
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            spectral_norm(module)
    return disc


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminator's intermediate features of fake and real (logits excluded)."""
    pairs = list(zip(fake[:-1], real[:-1]))
    return sum(torch.mean(torch.abs(f - r.detach())) for f, r in pairs) / max(len(pairs), 1)
