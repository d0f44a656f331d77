"""ReId: the re-identification privacy filter of the paper. A contrastive encoder (MONAI ResNet,
trained from scratch) maps a latent image to an anatomy embedding; a generated image whose largest
Pearson correlation with the training embeddings exceeds the threshold (the 95th percentile, over
validation videos, of each one's largest correlation with a training video) is too close to a
training heart and is rejected."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn

from USGenLib.echo.config import EchoConfig


class ReIdEncoder(nn.Module):
    """Latent image (B, 4, h, w) -> anatomy embedding (B, D), unit length.

    ``log_temperature`` and ``bias`` are the sigmoid contrastive loss's learnable scale and offset.
    """

    def __init__(self, config: EchoConfig):
        super().__init__()
        self.net = ResNet("basic", [1, 1, 1, 1], list(config.reid_planes), spatial_dims=2,
                          n_input_channels=config.latent_channels, conv1_t_size=3, conv1_t_stride=1,
                          no_max_pool=True, num_classes=config.reid_dim)
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(10.0))))
        self.bias = nn.Parameter(torch.tensor(-10.0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(z), dim=1)

    def contrastive_loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Sigmoid contrastive loss: embeddings a[i], b[i] are two frames of video i (a positive pair),
        a[i], b[j] of different videos (negatives); binary cross-entropy over every pair."""
        logits = self.log_temperature.exp() * a @ b.t() + self.bias
        labels = torch.eye(len(a), device=a.device)
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(a)


def pearson_max(query: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(Q, D), (N, D) -> (Q,) the largest Pearson correlation of each query with any bank row."""
    q = F.normalize(query - query.mean(1, keepdim=True), dim=1)
    k = F.normalize(bank - bank.mean(1, keepdim=True), dim=1)
    return (q @ k.t()).max(1).values


def privacy_threshold(train: torch.Tensor, val: torch.Tensor, percentile: float) -> float:
    """For each validation embedding its largest correlation with a training embedding; the
    ``percentile`` of these. The paper takes the other direction (each training video's closest
    validation video), which compares a maximum over the few validation videos with the maximum over
    all training videos that a candidate faces; with 480 training and 60 validation hearts it rejected
    12-24 % of fresh candidates. This way a heart as new as a validation heart passes with the
    percentile's probability, the same test a candidate gets."""
    return float(np.percentile(pearson_max(val, train).numpy(), percentile))


class PrivacyFilter:
    """The trained encoder, the training embeddings (one per training video: its ED frame) and the threshold."""

    def __init__(self, encoder: ReIdEncoder, bank: torch.Tensor, threshold: float):
        self.encoder, self.bank, self.threshold = encoder.eval(), bank, threshold

    @torch.no_grad()
    def similarity(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 4, h, w) latents -> (B,) largest correlation with a training video."""
        return pearson_max(self.encoder(z).float().cpu(), self.bank)

    def rejects(self, z: torch.Tensor) -> torch.Tensor:
        """(B,) bool: too similar to a training heart."""
        return self.similarity(z) > self.threshold
