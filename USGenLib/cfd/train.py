"""``usgen cfd train``: the CFD-removal training job on a ``usgen dataset cfd`` folder.

Two phases in one run, as the paper trains them: the coarse gated network alone (L1 + L1 inside the
mask) for ``config.coarse_steps`` steps, then the refinement GAN on the bridged coarse output with
the coarse network frozen (L1 + L1 in the mask + least-squares adversarial + discriminator feature
matching). Clips are drawn with the paper's coverage-quartile weights 1..4 and cropped around the
colour region (inference crops the same way).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss, MaskedLoss, PatchAdversarialLoss
from scipy import ndimage
from torch import nn

from USGenLib.cfd.detect import removal_mask
from USGenLib.cfd.networks import CONFIGS, CFDConfig, CFDRemover, MaskNet, bridge, composite, discriminator
from USGenLib.datasets.layouts.manifest import MANIFEST_NAME
from USGenLib.datasets.torch_datasets import CFDDataset
from USGenLib.errors import UsgenInputError
from USGenLib.io.luma import LUMA_WEIGHTS
from USGenLib.nets import feature_matching_loss
from USGenLib.nets.gated import frames_as_batch
from USGenLib.train import distributed
from USGenLib.train.devices import autocast
from USGenLib.train.distributed import Rank, wrap
from USGenLib.train.loop import LoopSettings, record_command, run_loop, training_card
from USGenLib.train.weights import save_weights


def network_input(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B?, 3, T, H, W) RGB in [0, 1] + (.., 1, T, H, W) mask -> (.., 2, T, H, W) grey-with-hole + mask."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1, 1)
    grey = (rgb * w).sum(dim=-4, keepdim=True)
    return torch.cat([grey * (1 - mask), mask], dim=-4)


def crop_around_mask(item: dict, crop: int, frames: int, rng: np.random.Generator) -> dict:
    """A (C, frames, crop, crop) window of every tensor of a CFD item, centred near a masked pixel."""
    mask = item["mask"][0]
    t_total, h, w = mask.shape
    t0 = int(rng.integers(0, t_total - frames + 1))
    where = torch.nonzero(mask[t0:t0 + frames].amax(0))
    if len(where):
        cy, cx = (int(v) for v in where[int(rng.integers(len(where)))])
    else:
        cy, cx = h // 2, w // 2
    y0 = int(np.clip(cy - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, h - crop))
    x0 = int(np.clip(cx - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, w - crop))
    return {k: item[k][:, t0:t0 + frames, y0:y0 + crop, x0:x0 + crop] for k in ("cfd", "bmode", "mask")}


def free_form_mask(shape: tuple[int, int, int], rng: np.random.Generator) -> torch.Tensor:
    """(1, T, H, W) float mask of scattered blobs inside an ellipse, slowly changing over time: what
    power Doppler of small vessels paints over tissue. The data set only puts colour over dark blood;
    mixing these free-form holes over tissue (as free-form inpainting trains) teaches the networks to
    fill tissue where the context is tissue."""
    t, h, w = shape
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), (1.5, *(2 * [rng.uniform(1.0, 3.0)])))
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, ry, rx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(0.25, 0.45) * h, rng.uniform(0.25, 0.45) * w
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    level = np.quantile(noise[:, inside], 1 - rng.uniform(0.3, 0.7))
    return torch.from_numpy((noise > level) & inside[None]).float()[None]


def tissue_item(crop: dict, rng: np.random.Generator) -> dict:
    """A grey screen of the clip's own B-mode with free-form holes over it (see ``free_form_mask``)."""
    bmode = crop["bmode"]
    return {"cfd": bmode.expand(3, -1, -1, -1).clone(), "bmode": bmode,
            "mask": free_form_mask(tuple(bmode.shape[1:]), rng)}


class _CFDCrops:
    """What both CFD training jobs share: the data set's splits and crops drawn for a step."""

    def __init__(self, data: str, config: CFDConfig, seed: int, device: torch.device, rank: Rank):
        self.config, self.seed, self.device, self.rank = config, seed, device, rank
        self.train_set = CFDDataset(data, split="train")
        self.val_set = CFDDataset(data, split="val")
        self.weights = self.train_set.sampling_weights()
        torch.manual_seed(seed)  # identical initial weights in every process and every run

    def draw_crops(self, step: int, rank: int) -> tuple[list[dict], np.random.Generator]:
        """Crops of step ``step``: clips drawn by coverage-quartile weight, from (seed, step, rank); the
        generator goes on drawing for the job."""
        rng = np.random.default_rng([self.seed, step, rank])
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        picks = torch.multinomial(self.weights, self.config.batch, replacement=True, generator=gen)
        return [crop_around_mask(self.train_set[int(i)], self.config.crop, self.config.clip_frames, rng)
                for i in picks], rng


class CFDTrainJob(_CFDCrops):
    """The job the shared loop trains (see USGenLib.train.loop.TrainJob)."""

    def __init__(self, data: str, config: CFDConfig, seed: int, device: torch.device, rank: Rank):
        super().__init__(data, config, seed, device, rank)
        self.model = CFDRemover(config).to(device)
        self.disc = discriminator(config).to(device)
        self.coarse = wrap(self.model.coarse, rank, device)
        self.refine = wrap(self.model.refine, rank, device)
        self.disc_ddp = wrap(self.disc, rank, device)
        betas = (0.5, 0.999)
        self.opt_coarse = torch.optim.Adam(self.model.coarse.parameters(), lr=config.lr, betas=betas)
        self.opt_refine = torch.optim.Adam(self.model.refine.parameters(), lr=config.lr, betas=betas)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=betas)
        self.l1 = nn.L1Loss()
        self.masked_l1 = MaskedLoss(nn.L1Loss())
        self.adv = PatchAdversarialLoss(criterion="least_squares")

    def modules(self) -> dict[str, nn.Module]:
        return {"coarse": self.model.coarse, "refine": self.model.refine, "disc": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"coarse": self.opt_coarse, "refine": self.opt_refine, "disc": self.opt_disc}

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        """Batch of step ``step``: the drawn crops, some turned into free-form holes over tissue."""
        crops, rng = self.draw_crops(step, rank)
        crops = [tissue_item(c, rng) if rng.random() < self.config.free_form else c for c in crops]
        batch = {k: torch.stack([c[k] for c in crops]) for k in crops[0]}
        batch["noise_seed"] = torch.tensor(int(rng.integers(1 << 62)))
        return batch

    def _reconstruction(self, raw, target, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's L1 on the whole raw output (known pixels included: it keeps the features honest)
        and L1-mask (MONAI's MaskedLoss: the error inside the mask, averaged over all pixels)."""
        return self.l1(raw, target), self.masked_l1(raw, target, mask)

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        dev = self.device
        mask = batch["mask"].to(dev).float()
        x = network_input(batch["cfd"].to(dev), mask)
        target = batch["bmode"].to(dev)
        grey = x[:, :1]
        if step < self.config.coarse_steps:
            with autocast(dev):
                raw = self.coarse(x).float()
            l1, l1m = self._reconstruction(raw, target, mask)
            loss = l1 + self.config.l1_mask_weight * l1m
            self.opt_coarse.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_coarse.step()
            return {"coarse_l1": l1.item(), "coarse_l1_mask": l1m.item()}

        with torch.no_grad():
            gen = torch.Generator().manual_seed(int(batch["noise_seed"]))
            bridged = bridge(composite(self.model.coarse(x), grey, mask), grey, mask, self.config, gen)
        with autocast(dev):
            raw = self.refine(torch.cat([bridged, mask], 1)).float()
            fake = composite(raw, grey, mask)
            fake_feats = self.disc_ddp(torch.cat([fake, mask], 1))
            real_feats = self.disc_ddp(torch.cat([target, mask], 1))
        l1, l1m = self._reconstruction(raw, target, mask)
        g_adv = self.adv(fake_feats[-1].float(), target_is_real=True, for_discriminator=False)
        fm = feature_matching_loss(fake_feats, real_feats)
        g_loss = l1 + self.config.l1_mask_weight * l1m + self.config.adv_weight * g_adv + self.config.fm_weight * fm
        self.opt_refine.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_refine.step()

        with autocast(dev):
            d_fake = self.disc_ddp(torch.cat([fake.detach(), mask], 1))[-1].float()
            d_real = self.disc_ddp(torch.cat([target, mask], 1))[-1].float()
        d_loss = 0.5 * (self.adv(d_fake, target_is_real=False, for_discriminator=True)
                        + self.adv(d_real, target_is_real=True, for_discriminator=True))
        self.opt_disc.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_disc.step()
        return {"refine_l1": l1.item(), "refine_l1_mask": l1m.item(), "g_adv": g_adv.item(), "fm": fm.item(),
                "d_loss": d_loss.item()}

    @torch.no_grad()
    def validate(self, step: int, max_items: int = 8) -> dict[str, float]:
        """Mean absolute error over the crop and inside the mask, and SSIM, of the pipeline so far
        (coarse, then full) on fixed crops of the first validation clips."""
        from USGenLib.metrics import ssim

        model = self.model.eval()
        stage = "coarse" if step <= self.config.coarse_steps else "full"
        l1s, l1ms, ssims = [], [], []
        for i in range(min(max_items, len(self.val_set))):
            item = crop_around_mask(self.val_set[i], self.config.crop, self.config.clip_frames,
                                    np.random.default_rng([self.seed, i]))
            mask = item["mask"][None].to(self.device).float()
            x = network_input(item["cfd"][None].to(self.device), mask)
            out = model(x, stage=stage, generator=torch.Generator().manual_seed(i))
            target = item["bmode"][None].to(self.device)
            err = torch.abs(out - target)
            l1s.append(err.mean().item())
            l1ms.append((err.sum() / mask.sum().clamp(min=1)).item())
            ssims.append(ssim(out[0, 0].cpu().numpy(), target[0, 0].cpu().numpy()))
        model.train()
        return {"val_l1": float(np.mean(l1s)), "val_l1_mask": float(np.mean(l1ms)), "val_ssim": float(np.mean(ssims))}


def rule_mask_of(cfd: torch.Tensor) -> torch.Tensor:
    """(3, T, H, W) RGB in [0, 1] -> (1, T, H, W) float: the colour rule's removal mask."""
    rgb = (cfd.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()
    return torch.from_numpy(removal_mask(rgb)).float()[None]


def mask_input(cfd: torch.Tensor, rule: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) RGB + (B, 1, T, H, W) rule mask -> (B*T, 4, H, W), the mask network's input."""
    return frames_as_batch(torch.cat([cfd, rule], 1))


class MaskTrainJob(_CFDCrops):
    """Training job of the learned mask (``usgen cfd train --network mask``): the data set's masks from
    its colour screens, Dice + cross-entropy (MONAI's DiceCELoss), Adam."""

    def __init__(self, data: str, config: CFDConfig, seed: int, device: torch.device, rank: Rank):
        super().__init__(data, config, seed, device, rank)
        self.model = MaskNet(config.mask_channels).to(device)
        self.net = wrap(self.model, rank, device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = DiceCELoss(sigmoid=True)

    def modules(self) -> dict[str, nn.Module]:
        return {"mask": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"mask": self.opt}

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        crops, _ = self.draw_crops(step, rank)
        for c in crops:
            c["rule"] = rule_mask_of(c["cfd"])
        return {k: torch.stack([c[k] for c in crops]) for k in ("cfd", "rule", "mask")}

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        x = mask_input(batch["cfd"], batch["rule"]).to(self.device)
        target = frames_as_batch(batch["mask"].float()).to(self.device)
        with autocast(self.device):
            logits = self.net(x).float()
        loss = self.loss(logits, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"mask_dice_ce": loss.item()}

    @torch.no_grad()
    def validate(self, step: int, max_items: int = 16) -> dict[str, float]:
        """Recall and precision of the ground-truth mask: the rule alone, and the rule with the network."""
        self.model.eval()
        hits = {"rule": [0, 0], "learned": [0, 0]}
        total = 0
        for i in range(min(max_items, len(self.val_set))):
            item = crop_around_mask(self.val_set[i], self.config.crop, self.config.clip_frames,
                                    np.random.default_rng([self.seed, i]))
            rule = rule_mask_of(item["cfd"])
            logits = self.model(mask_input(item["cfd"][None], rule[None]).to(self.device))
            truth = frames_as_batch(item["mask"][None].bool())
            learned = rule.bool().transpose(0, 1) | (logits.cpu() > 0)
            for name, pred in (("rule", frames_as_batch(rule[None].bool())), ("learned", learned)):
                hits[name][0] += int((pred & truth).sum())
                hits[name][1] += int(pred.sum())
            total += int(truth.sum())
        self.model.train()
        return {f"{k}_{m}": (v[0] / max(total, 1) if m == "recall" else v[0] / max(v[1], 1))
                for k, v in hits.items() for m in ("recall", "precision")}


NETWORKS = {"remover": (CFDTrainJob, "cfd"), "mask": (MaskTrainJob, "cfd_mask")}


def train_cfd(args, command: str) -> list[Path]:
    """Run the training job for ``usgen cfd train`` and export RUN_DIR/model.safetensors + card."""
    if not (Path(args.data) / MANIFEST_NAME).is_file():
        raise UsgenInputError(args.data, f"is not a `usgen dataset cfd` folder (no {MANIFEST_NAME})")
    config = CONFIGS[args.config]
    if args.coarse_steps is not None:
        config = replace(config, coarse_steps=args.coarse_steps)
    if args.batch is not None:
        config = replace(config, batch=args.batch)
    job_class, network = NETWORKS[args.network]
    default_steps = config.mask_steps if args.network == "mask" else config.coarse_steps + config.refine_steps
    steps = args.steps if args.steps is not None else default_steps
    with distributed.session(args.device) as (rank, device):
        job = job_class(str(args.data), config, args.seed, device, rank)
        settings = LoopSettings(steps=steps, seed=args.seed, checkpoint_every=args.checkpoint_every,
                                validate_every=args.validate_every, workers=args.workers)
        summary = run_loop(job, args.out, settings, rank, device, config.to_dict(), resume=args.resume,
                           on_start=lambda: record_command(args.out, command, args.resume))
        if not rank.is_main:
            return []
        figures = job.validate(steps)
        card = training_card(
            args.out, summary, title=f"CFD {'mask' if args.network == 'mask' else 'removal'} ({config.name})",
            data=f"{args.data} ({len(job.train_set)} training clips; coverage-quartile weighted sampling)",
            seed=args.seed, steps=steps, rank=rank, device=device, model=job.model, figures=figures)
        card["coarse_steps"] = config.coarse_steps
        out = save_weights(Path(args.out) / "model.safetensors", network, job.model.state_dict(), config.to_dict(), card)
        return [out]
