"""Network building blocks MONAI lacks: gated 3-D convolutions, spectral-norm PatchGANs."""

from USGenLib.nets.discriminators import feature_matching_loss, spectral_patch_discriminator
from USGenLib.nets.gated import GatedConv3d, GatedUp3d

__all__ = ["GatedConv3d", "GatedUp3d", "spectral_patch_discriminator", "feature_matching_loss"]
