"""``usgen echo train``: one training job per network, run by the shared loop (USGenLib.train.loop),
and ``all``, the chain in dependency order (the A-VAE first: the flow models and ReId train on its
latents). Every job draws its batch of step s from (seed, s, rank), so a resumed run repeats an
uninterrupted one."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, PatchAdversarialLoss
from torch import nn

from USGenLib.echo.autoencoder import decode_frames, encode_frames, vae_discriminator
from USGenLib.echo.calibration import GRID, fit_calibration
from USGenLib.echo.config import CONFIGS, STAGES, VIEWS, EchoConfig
from USGenLib.echo.data import EchoCycles, ef_balanced_weights, load_cycles
from USGenLib.echo.flow import flow_pair
from USGenLib.echo.generate import sample_video
from USGenLib.echo.labels import EFRegressor, mask_ef, segment_frames
from USGenLib.echo.latents import latent_cycles
from USGenLib.echo.models import EXTRA, NETWORKS, load_stage, network_name
from USGenLib.echo.reid import privacy_threshold
from USGenLib.errors import UsgenInputError
from USGenLib.nets import feature_matching_loss
from USGenLib.progress import emit
from USGenLib.train import distributed
from USGenLib.train.devices import autocast
from USGenLib.train.distributed import Rank, wrap
from USGenLib.train.loop import LoopSettings, record_command, run_loop, training_card
from USGenLib.train.weights import save_weights


def _frames(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0)


class _EchoJob:
    """What every echo job shares: the splits in memory, its config, seed and device, a generator per step."""

    stage = ""
    supervised = False          # the segmenter and the EF regressor learn at config.label_lr

    def __init__(self, data: str, config: EchoConfig, seed: int, device: torch.device, rank: Rank,
                 weights_dir: Path | None = None):
        self.config, self.seed, self.device, self.rank = config, seed, device, rank
        self.train_set = load_cycles(str(data), "train", config.size)
        self.val_set = load_cycles(str(data), "val", config.size)
        torch.manual_seed(seed)  # identical initial weights in every process and every run
        self.model = NETWORKS[self.stage](config).to(device)
        self.net = wrap(self.model, rank, device)
        lr = config.label_lr if self.supervised else config.lr
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)

    def modules(self) -> dict[str, nn.Module]:
        return {self.stage: self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {self.stage: self.opt}

    def generators(self, step: int, rank: int) -> tuple[np.random.Generator, torch.Generator]:
        rng = np.random.default_rng([self.seed, step, rank])
        return rng, torch.Generator().manual_seed(int(rng.integers(1 << 62)))

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def extra(self) -> dict[str, torch.Tensor]:
        """Tensors saved beside the weights (banks, thresholds); none by default."""
        return {}

    def data_note(self) -> str:
        return f"{len(self.train_set)} training clips, {len(self.val_set)} validation clips"


class AVAEJob(_EchoJob):
    """A-VAE: L1 + small KL on frame crops; after ``adv_start`` steps, least-squares adversarial loss and
    discriminator feature matching (in place of a perceptual loss, which would need downloaded weights)."""

    stage = "avae"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.disc = vae_discriminator(self.config).to(self.device)
        self.disc_ddp = wrap(self.disc, self.rank, self.device)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=self.config.lr, betas=(0.5, 0.999))
        self.adv = PatchAdversarialLoss(criterion="least_squares")

    def modules(self) -> dict[str, nn.Module]:
        return {"avae": self.model, "disc": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"avae": self.opt, "disc": self.opt_disc}

    def make_batch(self, step: int, rank: int) -> torch.Tensor:
        rng, _ = self.generators(step, rank)
        c, crop = self.config, self.config.vae_crop
        out = []
        for _ in range(c.vae_batch):
            cyc = self.train_set.cycles[int(rng.integers(len(self.train_set)))]
            f = cyc[int(rng.integers(len(cyc)))]
            y, x = (int(rng.integers(0, s - crop + 1)) for s in f.shape)
            out.append(f[y:y + crop, x:x + crop])
        return torch.stack(out)[:, None]

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        c = self.config
        x = _frames(batch).to(self.device) * 2 - 1
        with autocast(self.device):
            recon, mu, sigma = self.net(x)
        recon, mu, sigma = recon.float(), mu.float(), sigma.float()
        l1 = F.l1_loss(recon, x)
        kl = 0.5 * torch.mean(torch.sum(mu ** 2 + sigma ** 2 - torch.log(sigma ** 2 + 1e-8) - 1, dim=(1, 2, 3)))
        loss = l1 + c.kl_weight * kl
        figures = {"l1": l1.item(), "kl": kl.item()}
        adversarial = step >= c.adv_start
        if adversarial:
            with autocast(self.device):
                fake_feats = self.disc_ddp(recon)
                real_feats = self.disc_ddp(x)
            g_adv = self.adv(fake_feats[-1].float(), target_is_real=True, for_discriminator=False)
            fm = feature_matching_loss(fake_feats, real_feats)
            loss = loss + c.adv_weight * (g_adv + fm)
            figures.update(g_adv=g_adv.item(), fm=fm.item())
        self._step(loss)
        if adversarial:
            with autocast(self.device):
                d_fake = self.disc_ddp(recon.detach())[-1].float()
                d_real = self.disc_ddp(x)[-1].float()
            d_loss = 0.5 * (self.adv(d_fake, target_is_real=False, for_discriminator=True)
                            + self.adv(d_real, target_is_real=True, for_discriminator=True))
            self.opt_disc.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_disc.step()
            figures["d_loss"] = d_loss.item()
        return figures

    def val_frames(self, max_items: int = 16) -> torch.Tensor:
        """(N, H, W) uint8: two frames (ED and mid-cycle) of the first validation clips."""
        n = min(max_items, len(self.val_set))
        return torch.stack([c[k] for c in self.val_set.cycles[:n] for k in (0, len(c) // 2)])

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Reconstruction SSIM, PSNR and L1 of whole validation frames."""
        from USGenLib.metrics import psnr, ssim

        self.model.eval()
        frames = self.val_frames()
        recon = torch.cat([self.model.decode(self.model.encode(_frames(frames[i:i + 16])[:, None].to(self.device)))
                           for i in range(0, len(frames), 16)])[:, 0].cpu().numpy()
        truth = _frames(frames).numpy()
        self.model.train()
        return {"val_ssim": ssim(recon, truth), "val_psnr": psnr(recon, truth),
                "val_l1": float(np.abs(recon - truth).mean())}

    def finish(self) -> None:
        """Per-channel latent mean and standard deviation of the posterior means over training frames."""
        rng = np.random.default_rng([self.seed, 1])
        picks = [(int(i), int(rng.integers(len(self.train_set.cycles[int(i)]))))
                 for i in rng.integers(len(self.train_set), size=256)]
        frames = torch.stack([self.train_set.cycles[i][k] for i, k in picks]).to(self.device)
        self.model.eval()
        self.model.latent_shift.fill_(0.0)
        self.model.latent_scale.fill_(1.0)
        z = encode_frames(self.model, frames).transpose(0, 1).reshape(self.config.latent_channels, -1)
        self.model.latent_shift.copy_(z.mean(1))
        self.model.latent_scale.copy_(z.std(1).clamp(min=1e-3))


class SegJob(_EchoJob):
    """LV segmenter: frames of any phase with their LV masks, Dice + cross-entropy (MONAI's DiceCELoss)."""

    stage = "seg"
    supervised = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss = DiceCELoss(sigmoid=True)

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        rng, _ = self.generators(step, rank)
        frames, masks = [], []
        for _ in range(self.config.seg_batch):
            i = int(rng.integers(len(self.train_set)))
            k = int(rng.integers(len(self.train_set.cycles[i])))
            frames.append(self.train_set.cycles[i][k])
            masks.append(self.train_set.masks[i][k])
        return {"frames": torch.stack(frames)[:, None], "masks": torch.stack(masks)[:, None]}

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        with autocast(self.device):
            logits = self.net(_frames(batch["frames"]).to(self.device)).float()
        loss = self.loss(logits, batch["masks"].float().to(self.device))
        self._step(loss)
        return {"dice_ce": loss.item()}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Dice of every frame of the validation cycles."""
        self.model.eval()
        inter = total = 0.0
        for cyc, mask in zip(self.val_set.cycles, self.val_set.masks):
            pred = (self.model(_frames(cyc)[:, None].to(self.device)) > 0)[:, 0].cpu()
            inter += float((pred & mask).sum())
            total += float(pred.sum() + mask.sum())
        self.model.train()
        return {"val_dice": 2 * inter / max(total, 1.0)}


def ef_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """R^2, MAE and RMSE of EF predictions (percent)."""
    err = pred - truth
    ss_tot = float(np.sum((truth - truth.mean()) ** 2))
    return {"r2": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else float("nan"),
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt(np.mean(err ** 2)))}


def video_tensor(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W) uint8 -> (1, 1, T, H, W) float in [0, 1]."""
    return _frames(frames)[None, None]


class EFJob(_EchoJob):
    """EF regressor: videos of ``frames`` frames from a random phase (EF does not depend on where a clip
    starts). Loss: Dice + cross-entropy of every frame's LV map against the clip's LV mask (MONAI
    DiceCELoss) plus 0.1 x the EF's squared error in units of 25 % EF.

    The downstream test (echo eval) trains it on ``train_set`` (generated clips with their segmented
    masks, or the training split) with ``random_phase`` off: generated clips are videos from ED, not
    exact cycles to cut from."""

    stage = "ef"
    supervised = True

    def __init__(self, data, config, seed, device, rank, weights_dir=None, train_set: EchoCycles | None = None,
                 random_phase: bool = True):
        super().__init__(data, config, seed, device, rank, weights_dir)
        if train_set is not None:
            self.train_set = train_set
        self.random_phase = random_phase
        self.ef_weights = ef_balanced_weights(self.train_set.ef)
        self.mask_loss = DiceCELoss(sigmoid=True)

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        """Video and masks go through one random pose together (T frames and T masks as channels)."""
        rng, _ = self.generators(step, rank)
        idx = rng.choice(len(self.train_set), size=self.config.ef_batch, p=self.ef_weights)
        videos, masks = [], []
        t = self.config.frames
        for i in idx:
            start = int(rng.integers(1 << 16)) if self.random_phase else 0
            video, mask = self.train_set.clip(int(i), t, start)
            both = self.augment(torch.cat([_frames(video), mask.float()]), int(rng.integers(1 << 31)), t)
            videos.append(both[:t])
            masks.append(both[t:])
        return {"video": torch.stack(videos)[:, None], "masks": torch.stack(masks),
                "ef": self.train_set.ef[torch.from_numpy(idx)]}

    @staticmethod
    def augment(stack: torch.Tensor, seed: int, frames: int) -> torch.Tensor:
        """(T + T', H, W): T frames in [0, 1] then T' masks. One random pose for all (volume ratios do not
        change with it), nearest-neighbour for the masks; blur and contrast for the frames only: the
        regressor must also read generated clips, which the A-VAE decodes a little blurred."""
        from monai.transforms import Compose, RandAdjustContrast, RandAffine, RandGaussianSmooth
        from monai.utils import convert_to_tensor

        pose = RandAffine(prob=0.8, rotate_range=0.2, scale_range=0.1, translate_range=6, padding_mode="zeros")
        look = Compose([RandGaussianSmooth(sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), prob=0.5),
                        RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5))])
        pose.set_random_state(seed=seed)
        look.set_random_state(seed=seed + 1)
        pose.randomize(None)
        video = convert_to_tensor(look(pose(stack[:frames], randomize=False)), track_meta=False).float().clamp(0, 1)
        masks = convert_to_tensor(pose(stack[frames:], mode="nearest", randomize=False), track_meta=False).float()
        return torch.cat([video, masks])

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        with autocast(self.device):
            logits = self.net(batch["video"].to(self.device), per_frame=True)
        logits = logits.float()
        masks = F.avg_pool2d(batch["masks"].to(self.device), 2) > 0.5
        mask_loss = self.mask_loss(logits.flatten(0, 1)[:, None], masks.flatten(0, 1)[:, None].float())
        ef = F.mse_loss(EFRegressor.ef_of(self.model.log_volumes(logits)) / 25.0,
                        batch["ef"].float().to(self.device) / 25.0)
        self._step(0.1 * ef + mask_loss)       # the maps carry the EF; at full weight its gradient stalls them
        return {"mse": ef.item(), "mask_dice_ce": mask_loss.item()}

    @torch.no_grad()
    def predict(self, cycles: EchoCycles) -> np.ndarray:
        self.model.eval()
        out = np.array([float(self.model(video_tensor(cycles.clip(i, self.config.frames)[0]).to(self.device)))
                        for i in range(len(cycles))])
        self.model.train()
        return out

    def validate(self, step: int) -> dict[str, float]:
        s = ef_scores(self.predict(self.val_set), self.val_set.ef.numpy())
        return {f"val_{k}": v for k, v in s.items()}


class _LatentJob(_EchoJob):
    """Jobs on A-VAE latents (LIFM, ReId, LVFM): the A-VAE comes from ``weights_dir`` (bundled by default)."""

    def __init__(self, data, config, seed, device, rank, weights_dir=None, cache_dir: Path | None = None):
        super().__init__(data, config, seed, device, rank, weights_dir)
        self.vae, vae_config, _, vae_path = load_stage("avae", weights_dir, device)
        if (vae_config.size, vae_config.latent_channels) != (config.size, config.latent_channels):
            raise UsgenInputError(vae_path, f"A-VAE for {vae_config.size}-pixel frames, this config needs {config.size}")
        self.vae_path = vae_path
        folder = cache_dir or vae_path.parent
        self.train_z = latent_cycles(self.vae, vae_path, self.train_set, "train", folder)
        self.val_z = latent_cycles(self.vae, vae_path, self.val_set, "val", folder)

    def video_latents(self, zs: list[torch.Tensor], i: int, start: int = 0) -> torch.Tensor:
        """(4, T, h, w) latents of clip i's video of ``frames`` frames from ``start`` after ED."""
        z = zs[i]
        return z[(start + torch.arange(self.config.frames)) % len(z)].transpose(0, 1)


class _FlowJob(_LatentJob):
    """The flow-matching jobs; each defines ``loss(batch, net)``, the velocity's mean squared error."""

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        loss = self.loss(batch, self.net)
        self._step(loss)
        return {"flow_mse": loss.item()}


class LIFMJob(_FlowJob):
    """LIFM: rectified flow on latent frames of any phase, conditioned on view and that frame's LV mask;
    both dropped together with probability ``cond_drop``. The ED masks of the training clips are kept as
    the bank generation draws its anatomy masks from."""

    stage = "lifm"

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        rng, gen = self.generators(step, rank)
        z, masks, views = [], [], []
        for _ in range(self.config.lifm_batch):
            i = int(rng.integers(len(self.train_set)))
            k = int(rng.integers(len(self.train_z[i])))
            z.append(self.train_z[i][k])
            masks.append(self.train_set.masks[i][k])
            views.append(int(self.train_set.views[i]))
        z = torch.stack(z)
        x, t, target = flow_pair(z, gen)
        keep = torch.from_numpy(rng.random(len(z)) >= self.config.cond_drop)
        return {"x": x, "t": t, "target": target, "mask": torch.stack(masks)[:, None], "view": torch.tensor(views),
                "keep": keep}

    def loss(self, batch: dict, net: nn.Module) -> torch.Tensor:
        d = {k: v.to(self.device) for k, v in batch.items()}
        with autocast(self.device):
            v = net(d["x"], d["t"], d["view"], d["mask"], d["keep"]).float()
        return F.mse_loss(v, d["target"])

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Flow loss on the ED frames of the validation clips at fixed noise and times."""
        self.model.eval()
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.stack([zs[0] for zs in self.val_z])
        x, t, target = flow_pair(z, gen)
        batch = {"x": x, "t": t, "target": target, "mask": torch.stack([m[0] for m in self.val_set.masks])[:, None],
                 "view": self.val_set.views, "keep": torch.ones(len(z), dtype=torch.bool)}
        loss = self.loss(batch, self.model).item()
        self.model.train()
        return {"val_flow_mse": loss}

    def extra(self) -> dict[str, torch.Tensor]:
        return {"mask_bank": torch.stack([m[0] for m in self.train_set.masks]).to(torch.uint8),
                "bank_views": self.train_set.views.clone()}


class ReIdJob(_LatentJob):
    """ReId: two frames of one training video are a positive pair, frames of different videos negatives
    (the paper's sampling), sigmoid contrastive loss; latents get a little noise so the encoder keys on
    anatomy, not on exact values."""

    stage = "reid"

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        rng, gen = self.generators(step, rank)
        n = min(self.config.reid_batch, len(self.train_set))
        idx = rng.choice(len(self.train_set), size=n, replace=False)
        a = torch.stack([self.train_z[i][int(rng.integers(len(self.train_z[i])))] for i in idx])
        b = torch.stack([self.train_z[i][int(rng.integers(len(self.train_z[i])))] for i in idx])
        return {"a": a + 0.05 * torch.randn(a.shape, generator=gen), "b": b + 0.05 * torch.randn(b.shape, generator=gen)}

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        with autocast(self.device):
            a = self.net(batch["a"].to(self.device)).float()
            b = self.net(batch["b"].to(self.device)).float()
        loss = self.model.contrastive_loss(a, b)
        self._step(loss)
        return {"contrastive": loss.item()}

    @torch.no_grad()
    def embed_ed(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """(N, D) embeddings of each video's first (ED) frame, as the paper represents a video."""
        self.model.eval()
        out = self.model(torch.stack([z[0] for z in zs]).to(self.device)).float().cpu()
        self.model.train()
        return out

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Re-identification accuracy: a validation video's mid-cycle frame finds its own ED frame first."""
        self.model.eval()
        ed = self.model(torch.stack([z[0] for z in self.val_z]).to(self.device)).float().cpu()
        mid = self.model(torch.stack([z[len(z) // 2] for z in self.val_z]).to(self.device)).float().cpu()
        self.model.train()
        q = F.normalize(mid - mid.mean(1, keepdim=True), dim=1)
        k = F.normalize(ed - ed.mean(1, keepdim=True), dim=1)
        hits = (q @ k.t()).argmax(1) == torch.arange(len(q))
        return {"val_reid_accuracy": float(hits.float().mean())}

    def extra(self) -> dict[str, torch.Tensor]:
        bank = self.embed_ed(self.train_z)
        threshold = privacy_threshold(bank, self.embed_ed(self.val_z), self.config.reid_percentile)
        return {"bank": bank, "threshold": torch.tensor(threshold)}


class LVFMJob(_FlowJob):
    """LVFM: rectified flow on latent videos from ED, conditioned on the ED-frame latent and the EF;
    each condition dropped independently with probability ``cond_drop``. At export, its EF calibration
    (echo/calibration.py) is measured with the segmenter of the same weights folder."""

    stage = "lvfm"

    def __init__(self, data, config, seed, device, rank, weights_dir=None, cache_dir=None):
        super().__init__(data, config, seed, device, rank, weights_dir, cache_dir)
        self.ef_weights = ef_balanced_weights(self.train_set.ef)
        self.seg = load_stage("seg", weights_dir, device)[0]

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        rng, gen = self.generators(step, rank)
        idx = rng.choice(len(self.train_set), size=self.config.lvfm_batch, p=self.ef_weights)
        video = torch.stack([self.video_latents(self.train_z, int(i)) for i in idx])
        x, t, target = flow_pair(video, gen)
        drop = rng.random((2, len(idx))) < self.config.cond_drop
        return {"x": x, "t": t, "target": target, "anatomy": video[:, :, 0], "ef": self.train_set.ef[torch.from_numpy(idx)],
                "keep_anatomy": torch.from_numpy(~drop[0]), "keep_ef": torch.from_numpy(~drop[1])}

    def loss(self, batch: dict, net: nn.Module) -> torch.Tensor:
        d = {k: v.to(self.device) for k, v in batch.items()}
        with autocast(self.device):
            v = net(d["x"], d["t"], d["anatomy"], d["ef"], d["keep_anatomy"], d["keep_ef"]).float()
        return F.mse_loss(v, d["target"])

    @torch.no_grad()
    def validate(self, step: int, max_items: int = 16) -> dict[str, float]:
        self.model.eval()
        gen = torch.Generator().manual_seed(self.seed)
        n = min(max_items, len(self.val_set))
        video = torch.stack([self.video_latents(self.val_z, i) for i in range(n)])
        x, t, target = flow_pair(video, gen)
        keep = torch.ones(n, dtype=torch.bool)
        batch = {"x": x, "t": t, "target": target, "anatomy": video[:, :, 0], "ef": self.val_set.ef[:n],
                 "keep_anatomy": keep, "keep_ef": keep}
        loss = self.loss(batch, self.model).item()
        self.model.train()
        return {"val_flow_mse": loss}

    @torch.no_grad()
    def calibration(self, pixel_mm: float) -> torch.Tensor:
        """(views, 2) measured-vs-conditioned EF line per view: the first ``calibration_clips`` validation
        hearts, each animated at every EF of the grid with the config's steps and guidance."""
        c = self.config
        self.model.eval()
        gen = torch.Generator().manual_seed(self.seed)
        conditioned, measured, views = [], [], []
        for i in range(min(c.calibration_clips, len(self.val_set))):
            view = int(self.val_set.views[i])
            for ef in GRID:
                video = sample_video(self.model, self.val_z[i][0].to(self.device), ef, c.frames, gen,
                                     c.sample_steps, c.guidance)
                masks = segment_frames(self.seg, decode_frames(self.vae, video.transpose(0, 1)))
                conditioned.append(ef)
                measured.append(mask_ef(masks, VIEWS[view], pixel_mm)["ef"])
                views.append(view)
        self.model.train()
        return fit_calibration(np.array(conditioned), np.array(measured), np.array(views), len(VIEWS))

    def extra(self) -> dict[str, torch.Tensor]:
        """The frame rate and pixel size generated clips are written with (the training data's medians),
        the training EF range and the EF calibration."""
        pixel_mm = float(np.median(self.train_set.pixel_mm))
        ef = self.train_set.ef
        return {"fps": torch.tensor(float(np.median(self.train_set.fps))), "pixel_mm": torch.tensor(pixel_mm),
                "ef_range": torch.stack([ef.min(), ef.max()]).float(), "ef_calibration": self.calibration(pixel_mm)}


JOBS = {"avae": AVAEJob, "seg": SegJob, "ef": EFJob, "lifm": LIFMJob, "reid": ReIdJob, "lvfm": LVFMJob}
TITLES = {"avae": "Echo A-VAE (AutoencoderKL 4f4 + PatchGAN)", "seg": "Echo LV segmenter (UNet)",
          "ef": "Echo EF regressor (per-frame UNet, EF from the LV volume ratio)",
          "lifm": "Echo LIFM (latent image flow matching)", "reid": "Echo ReId privacy filter",
          "lvfm": "Echo LVFM (latent video flow matching)"}


def train_stage(stage: str, data: Path, config: EchoConfig, run_dir: Path, weights_out: Path, rank: Rank,
                device: torch.device, *, seed: int = 0, steps: int | None = None, resume: bool = False,
                weights_dir: Path | None = None, cache_dir: Path | None = None, command: str = "",
                checkpoint_every: int = 100, validate_every: int | None = None) -> Path | None:
    """Train one stage in ``run_dir``; rank 0 writes its weights + model card to ``weights_out`` (returned;
    None on the other ranks), and every rank returns once they are written: the next stage loads them."""
    kwargs = {"cache_dir": cache_dir} if stage in ("lifm", "reid", "lvfm") else {}
    job = JOBS[stage](str(data), config, seed, device, rank, weights_dir, **kwargs)
    steps = steps or config.steps_of(stage)
    settings = LoopSettings(steps=steps, seed=seed, checkpoint_every=checkpoint_every,
                            validate_every=validate_every or max(steps // 4, 1), log_every=10, workers=0)
    t0 = time.perf_counter()
    summary = run_loop(job, run_dir, settings, rank, device, config.to_dict(), resume=resume,
                       on_start=lambda: record_command(run_dir, command, resume))
    written = None
    if rank.is_main:
        if hasattr(job, "finish"):
            job.finish()
        figures = job.validate(steps)
        extra = {EXTRA + k: v for k, v in job.extra().items()}
        state = {**job.model.state_dict(), **extra}
        card = training_card(run_dir, summary, title=f"{TITLES[stage]} ({config.name})",
                             data=f"{data} ({job.data_note()})", seed=seed, steps=steps, rank=rank, device=device,
                             model=job.model, figures=figures,
                             time_note=f"({time.perf_counter() - t0:.0f} s with data and export)")
        if stage in ("lifm", "reid", "lvfm"):
            card["avae"] = str(job.vae_path)
        emit({"stage": f"{stage} trained", **figures})
        written = save_weights(weights_out, network_name(stage), state, config.to_dict(), card)
    distributed.barrier(rank)
    return written


def train_echo(args, command: str) -> list[Path]:
    """``usgen echo train STAGE|all``: one stage into RUN_DIR (weights RUN_DIR/<stage>.safetensors), or the
    chain with each stage in RUN_DIR/<stage>/ and all weights in RUN_DIR (a folder --weights-dir takes)."""
    from USGenLib.echo.data import check_data

    check_data(args.data)
    config = CONFIGS[args.config]
    out = Path(args.out)
    loop = {"checkpoint_every": args.checkpoint_every, "validate_every": args.validate_every}
    chain = args.stage == "all"
    if chain:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    with distributed.session(args.device) as (rank, device):  # one process group for the whole chain
        for stage in STAGES if chain else (args.stage,):  # a finished stage resumes: it is only exported again
            run_dir, weights_dir = (out / stage, out) if chain else (out, args.weights_dir)
            weights = train_stage(stage, args.data, config, run_dir, out / f"{stage}.safetensors", rank, device,
                                  seed=args.seed, steps=args.steps, resume=args.resume, weights_dir=weights_dir,
                                  cache_dir=out, command=command, **loop)
            if weights:
                written.append(weights)
    return written
