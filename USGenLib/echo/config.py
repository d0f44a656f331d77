"""Sizes and training settings of the six echo networks. ``tiny`` trains in the test suite in
seconds; ``default`` is the bundled set, sized so a 32-frame 112x112 clip samples in a few seconds
on a 2-core CPU. Every stage's weights carry the whole config, so any stage rebuilds its network."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

VIEWS = ("A4C", "PSAX", "PLAX")
STAGES = ("avae", "seg", "ef", "lifm", "reid", "lvfm")   # the order `train all` runs them in


@dataclass(frozen=True)
class EchoConfig:
    name: str = "default"
    size: int = 112                     # frame side (the data set's 112x112)
    frames: int = 32                    # frames of a training video (from ED, one cycle and more)
    lr: float = 2e-4                    # the generative networks
    label_lr: float = 1e-3              # the segmenter and EF regressor (small supervised networks)
    # A-VAE (MONAI AutoencoderKL + PatchDiscriminator); latent 4 channels at 1/4 resolution
    vae_channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    norm_groups: int = 8
    disc_channels: int = 16
    kl_weight: float = 1e-6
    adv_weight: float = 0.02
    adv_start: int = 600                # reconstruction alone first: the discriminator cannot help a blur
    vae_crop: int = 64                  # training crops (the networks are convolutional)
    vae_batch: int = 16
    avae_steps: int = 1500
    # LIFM (MONAI DiffusionModelUNet, view as a class, LV mask concatenated)
    lifm_channels: tuple[int, ...] = (32, 64, 64)
    lifm_attention: tuple[bool, ...] = (False, False, True)
    lifm_batch: int = 32
    lifm_steps: int = 1500
    cond_drop: float = 0.1              # each condition dropped at random (classifier-free guidance)
    # ReId (MONAI ResNet on latents, sigmoid contrastive loss)
    reid_planes: tuple[int, ...] = (16, 32, 64, 128)
    reid_dim: int = 64
    reid_batch: int = 32
    reid_steps: int = 1600
    reid_percentile: float = 95.0
    # LVFM (factorised space-time U-Net from MONAI blocks)
    lvfm_channels: tuple[int, ...] = (24, 48)
    lvfm_batch: int = 4
    lvfm_steps: int = 6000
    calibration_clips: int = 24         # validation hearts the LVFM's EF calibration is measured on
    # labels: LV segmenter (MONAI UNet) and EF regressor (a MONAI UNet per frame at half resolution; EF
    # from the LV areas it finds)
    seg_channels: tuple[int, ...] = (8, 16, 32, 64)
    seg_batch: int = 16
    seg_steps: int = 1500
    ef_channels: tuple[int, ...] = (8, 16, 32, 64)
    ef_batch: int = 8
    ef_steps: int = 2500
    # sampling
    sample_steps: int = 8               # Euler steps (the paper: 100 on a GPU)
    guidance: float = 2.0
    ef_candidates: int = 4              # videos drawn at most per clip, until one's LV masks show the EF asked
    ef_tolerance: float = 2.5           # ... within this many EF points (else the closest is kept)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "EchoConfig":
        known = {f.name: f for f in fields(cls)}
        out = {}
        for k, v in d.items():
            if k in known:
                out[k] = tuple(v) if isinstance(v, list) else v
        return cls(**out)

    def steps_of(self, stage: str) -> int:
        return getattr(self, f"{stage}_steps")

    @property
    def latent_size(self) -> int:
        return self.size // 4


CONFIGS = {
    "tiny": EchoConfig(name="tiny", size=32, frames=8, lr=1e-3, label_lr=5e-3, vae_channels=(8, 8, 8), norm_groups=4,
                       disc_channels=8, adv_start=3, vae_crop=32, vae_batch=4, avae_steps=6,
                       lifm_channels=(8, 16, 16), lifm_attention=(False, False, True), lifm_batch=8, lifm_steps=6,
                       reid_planes=(8, 8, 16, 16), reid_dim=16, reid_batch=8, reid_steps=6,
                       lvfm_channels=(8, 16), lvfm_batch=2, lvfm_steps=6, seg_channels=(4, 8, 16), seg_batch=4,
                       seg_steps=6, ef_channels=(4, 8, 8, 8), ef_batch=4, ef_steps=6, sample_steps=3,
                       calibration_clips=3, ef_candidates=2),
    "default": EchoConfig(),
}
