"""The paired pix2pix job (low -> high quality simulation) and the anatomy network's job, on a
``usgen dataset enhance`` folder; the unpaired job, built on FramesJob, lives in unpaired.py, and
``usgen enhance train`` runs them (train.py).

pix2pix as the paper trains it: Adam 2e-4 (0.5, 0.999), L1 x 100 on the FoV-masked output plus the
conditional GAN loss (the discriminator sees the generator's input beside the image), random crops
in training, the whole field of view at inference (the generator is fully convolutional).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss, PatchAdversarialLoss
from torch import nn

from USGenLib.enhance.data import PairFrames
from USGenLib.enhance.inputs import enhance_frames, network_input
from USGenLib.enhance.networks import EnhanceConfig, anatomy_net, discriminator, generator, input_channels
from USGenLib.train.devices import autocast
from USGenLib.train.distributed import Rank, wrap

VALIDATION_FRAMES = 16


def augment_contrast(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random gamma and gain per image: the anatomy network must not rely on one simulator's grey
    levels, since it judges translated and enhanced images too."""
    b = image.shape[0]
    gamma = torch.from_numpy(rng.uniform(0.6, 1.6, b).astype(np.float32)).view(b, 1, 1, 1)
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, b).astype(np.float32)).view(b, 1, 1, 1)
    return (image.clamp(min=0) ** gamma * gain).clamp(0, 1)


class FramesJob:
    """What the enhancement jobs share: the splits in memory and per-step random streams."""

    def __init__(self, data: str, config: EnhanceConfig, seed: int, device: torch.device, rank: Rank,
                 max_items: int | None = None):
        self.config, self.seed, self.device, self.rank = config, seed, device, rank
        self.train_set = PairFrames(data, "train", max_items)
        self.val_set = PairFrames(data, "val", max_items)
        pick = np.random.default_rng(seed).permutation(len(self.val_set))[:VALIDATION_FRAMES]
        self.val_index = np.sort(pick)
        torch.manual_seed(seed)  # identical initial weights in every process and every run

    def data_note(self) -> str:
        return ""

    def step_rng(self, step: int, rank: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step, rank])

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        return self.train_set.random_crops(self.step_rng(step, rank), self.config.batch, self.config.patch)

    def _validation_batch(self) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in self.val_set.tensors(self.val_index).items()}


class PairedJob(FramesJob):
    """pix2pix low -> high quality (see USGenLib.train.loop.TrainJob)."""

    network = "enhance"
    mode = "paired"

    def __init__(self, data: str, config: EnhanceConfig, seed: int, device: torch.device, rank: Rank,
                 max_items: int | None = None):
        super().__init__(data, config, seed, device, rank, max_items)
        self.model = generator(config).to(device)
        self.disc = discriminator(config, input_channels(config.variant) + 1).to(device)  # conditioned on the input
        self.g = wrap(self.model, rank, device)
        self.d = wrap(self.disc, rank, device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=betas)
        self.adv = PatchAdversarialLoss(criterion="bce")  # the paper's log-likelihood GAN loss
        self.l1 = nn.L1Loss()

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model, "discriminator": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        b = {k: v.to(self.device) for k, v in batch.items()}
        variant = self.config.variant
        x = network_input(b["lq"], b["fov"], variant, b["labels"], b["attenuation"])
        target = b["hq"] * 2 - 1
        with autocast(self.device):
            fake = ((self.g(x).float() + 1) / 2 * b["fov"]) * 2 - 1
            g_adv = self.adv(self.d(torch.cat([x, fake], 1))[-1].float(), target_is_real=True,
                             for_discriminator=False)
        l1 = self.l1((fake + 1) / 2, b["hq"])  # both are black outside the FoV: the loss is the FoV's
        g_loss = g_adv + self.config.l1_weight * l1
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        with autocast(self.device):
            d_fake = self.d(torch.cat([x, fake.detach()], 1))[-1].float()
            d_real = self.d(torch.cat([x, target], 1))[-1].float()
        d_loss = 0.5 * (self.adv(d_fake, target_is_real=False, for_discriminator=True)
                        + self.adv(d_real, target_is_real=True, for_discriminator=True))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return {"l1": l1.item(), "g_adv": g_adv.item(), "d_loss": d_loss.item()}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """PSNR, SSIM and patch-KL in the FoV of fixed whole validation frames."""
        from USGenLib.metrics import patch_kl, psnr, ssim

        self.model.eval()
        b = self._validation_batch()
        out = enhance_frames(self.model, b, self.config.variant).cpu().numpy()[:, 0]
        self.model.train()
        hq, fov = b["hq"].cpu().numpy()[:, 0], b["fov"].cpu().numpy()[0, 0] > 0
        return {"val_psnr": psnr(out, hq, fov), "val_ssim": ssim(out, hq, fov), "val_patch_kl": patch_kl(hq, out, fov)}


class AnatomyJob(FramesJob):
    """The anatomy network: tissue labels from low- or high-quality simulations (MONAI DiceCE)."""

    network = "enhance_anatomy"
    mode = "anatomy"

    def __init__(self, data: str, config: EnhanceConfig, seed: int, device: torch.device, rank: Rank,
                 max_items: int | None = None):
        super().__init__(data, config, seed, device, rank, max_items)
        self.model = anatomy_net(config).to(device)
        self.net = wrap(self.model, rank, device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def modules(self) -> dict[str, nn.Module]:
        return {"anatomy": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"anatomy": self.opt}

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        rng = self.step_rng(step, rank)
        crops = self.train_set.random_crops(rng, self.config.batch, self.config.seg_patch)
        use_hq = torch.from_numpy(rng.random(self.config.batch) < 0.5).view(-1, 1, 1, 1)
        image = torch.where(use_hq, crops["hq"], crops["lq"])
        return {"image": augment_contrast(image, rng), "labels": crops["labels"]}

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        with autocast(self.device):
            logits = self.net(batch["image"].to(self.device)).float()
        loss = self.loss(logits, batch["labels"].to(self.device)[:, None])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"dice_ce": loss.item()}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Mean foreground Dice on whole validation frames, high and low quality."""
        from USGenLib.enhance.evaluate import tissue_dice

        self.model.eval()
        b = self._validation_batch()
        figures = {f"val_dice_{q}": tissue_dice(self.model, b[q], b["labels"], b["fov"]) for q in ("hq", "lq")}
        self.model.train()
        return figures
