"""The A-VAE: MONAI's AutoencoderKL (latent 4 channels at 1/4 resolution, "4f4") trained with a
PatchGAN (MONAI's PatchDiscriminator, spectral norm) after a warm-up, and a small KL weight."""

from __future__ import annotations

import torch
from monai.networks.nets import AutoencoderKL
from torch import nn

from USGenLib.echo.config import EchoConfig
from USGenLib.nets import spectral_patch_discriminator


class EchoAutoencoder(nn.Module):
    """Frames (B, 1, H, W) in [0, 1] <-> latents (B, 4, H/4, W/4) of about unit variance.

    ``latent_shift`` and ``latent_scale`` (4,) are the per-channel mean and standard deviation of the
    training frames' latents, measured after training and stored with the weights: the flow models see
    standardised latents, so their noise and data have the same scale.
    """

    def __init__(self, config: EchoConfig):
        super().__init__()
        levels = len(config.vae_channels)
        self.net = AutoencoderKL(spatial_dims=2, in_channels=1, out_channels=1, channels=config.vae_channels,
                                 num_res_blocks=1, attention_levels=(False,) * levels,
                                 latent_channels=config.latent_channels, norm_num_groups=config.norm_groups,
                                 with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pass: (B, 1, H, W) in [-1, 1] -> (reconstruction in [-1, 1], mu, sigma)."""
        return self.net(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> scaled posterior means (B, 4, H/4, W/4)."""
        mu, _ = self.net.encode(x * 2 - 1)
        return (mu - self.latent_shift.view(1, -1, 1, 1)) / self.latent_scale.view(1, -1, 1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, 4, h, w) -> frames (B, 1, 4h, 4w) in [0, 1]."""
        y = self.net.decode(z * self.latent_scale.view(1, -1, 1, 1) + self.latent_shift.view(1, -1, 1, 1))
        return ((y + 1) / 2).clamp(0, 1)


def vae_discriminator(config: EchoConfig) -> nn.Module:
    """(B, 1, H, W) -> list of features, the last one patch logits."""
    return spectral_patch_discriminator(2, 1, channels=config.disc_channels, num_layers_d=3)


@torch.no_grad()
def encode_frames(vae: EchoAutoencoder, frames: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 4, H/4, W/4) scaled latents, ``chunk`` frames at a time."""
    out = [vae.encode(frames[i:i + chunk].float().div(255)[:, None]) for i in range(0, len(frames), chunk)]
    return torch.cat(out)


@torch.no_grad()
def decode_frames(vae: EchoAutoencoder, z: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(N, 4, h, w) scaled latents -> (N, H, W) float frames in [0, 1]."""
    return torch.cat([vae.decode(z[i:i + chunk])[:, 0] for i in range(0, len(z), chunk)])
