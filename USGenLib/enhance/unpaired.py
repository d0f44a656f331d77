"""Unpaired translation toward a user's real scans, and the domain classifier that judges it.

The diffusion-autoencoder attempt failed because its real and simulated embeddings stayed
separable. Here the generator is trained the way contrastive unpaired translation (CUT) does: a
PatchGAN against real frames pulls the appearance, a patch-wise InfoNCE loss between the input's and
the output's features at the same places keeps the content, and the frozen anatomy network (trained
on simulations) must still find the simulation's tissue labels in the output, so shapes cannot move.
The features for InfoNCE are the anatomy network's encoder (CUT uses the generator's own; a fixed
encoder cannot be gamed by the generator). MONAI has neither a PatchNCE loss nor CUT: written here.

Success is measured as the paper measured failure: a classifier trained to tell translated
simulation frames from real ones, scored on frames neither saw in training, should be near chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from torch import nn

from USGenLib.enhance.inputs import enhance_frames
from USGenLib.enhance.networks import AnatomyNet, EnhanceConfig, discriminator, generator, load_anatomy
from USGenLib.enhance.jobs import FramesJob
from USGenLib.errors import UsgenInputError
from USGenLib.train.distributed import Rank, wrap

REAL_SUFFIXES = (".dcm", ".seq.nrrd", ".nrrd", ".avi", ".mp4", ".mov", ".mkv", ".webm", ".igs.mha", ".mha",
                 ".png", ".jpg", ".jpeg", ".tif", ".tiff")
FRAMES_PER_FILE = 64
HELD_OUT_EVERY = 4        # every 4th frame of a cine is held out for the domain classifier
NCE_LAYERS = ("conv_0", "down_1", "down_2")
NCE_PATCHES = 128
NCE_TEMPERATURE = 0.07    # CUT's


def _read_grey_frames(path: Path) -> np.ndarray:
    """(T, H, W) uint8 grey frames of one file, the burned-in text around the image blacked out."""
    from USGenLib.io import read_cine, suffix_of
    from USGenLib.io.luma import luma
    from USGenLib.text_blackout import image_mask

    if suffix_of(path) in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        from PIL import Image

        try:
            frames = np.asarray(Image.open(path).convert("L"))[None]
        except OSError as err:
            raise UsgenInputError(path, f"cannot be read as an image ({err})") from None
    else:
        cine = read_cine(path, lazy=True)
        pick = np.linspace(0, cine.num_frames - 1, min(cine.num_frames, FRAMES_PER_FILE)).round().astype(int)
        frames = np.asarray(cine.frames[np.unique(pick)])
        if frames.ndim == 4:  # RGB scanners' grey: their luma
            frames = luma(frames)
    mask = image_mask(frames)
    if mask.sum() < 0.02 * mask.size:
        raise UsgenInputError(path, "holds no ultrasound image area (black or text only)")
    ys, xs = np.nonzero(mask)
    frames = np.where(mask, frames, 0)[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return frames.astype(np.uint8)


def _resize(frames: np.ndarray, short_side: int) -> np.ndarray:
    t = torch.from_numpy(frames.astype(np.float32))[:, None]
    h, w = frames.shape[1:]
    s = short_side / min(h, w)
    size = (max(short_side, round(h * s)), max(short_side, round(w * s)))
    return F.interpolate(t, size=size, mode="area" if s < 1 else "bilinear", align_corners=None if s < 1 else False
                         )[:, 0].round().clamp(0, 255).byte().numpy()


class RealFrames:
    """Frames of a folder of real B-mode scans, cropped to their image area and scaled so the shorter
    side is ``short_side`` (simulations fill their frame the same way). ``train`` / ``held_out``: lists
    of (H, W) uint8 frames (every 4th frame of each cine is held out); ``files``: what was read."""

    def __init__(self, folder: str | Path, short_side: int):
        folder = Path(folder)
        if not folder.is_dir():
            raise UsgenInputError(folder, "is not a folder of real scans")
        from USGenLib.io import suffix_of

        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                       and suffix_of(p) in REAL_SUFFIXES)
        if not files:
            raise UsgenInputError(folder, f"holds no scans ({', '.join(REAL_SUFFIXES)})")
        self.train: list[np.ndarray] = []
        self.held_out: list[np.ndarray] = []
        self.by_file: list[list[np.ndarray]] = []  # training frames per file: every file is drawn equally often
        self.files = [p.name for p in files]
        for path in files:
            frames = _resize(_read_grey_frames(path), short_side)
            held = [len(frames) > 1 and i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 for i in range(len(frames))]
            self.held_out += [f for f, h in zip(frames, held) if h]
            self.by_file.append([f for f, h in zip(frames, held) if not h])
            self.train += self.by_file[-1]

    def crops(self, rng: np.random.Generator, batch: int, size: int, frames: list[np.ndarray] | None = None
              ) -> torch.Tensor:
        """(batch, 1, size, size) in [0, 1]: random frames (of ``frames``, or of a file drawn uniformly,
        so one long cine does not outweigh single frames), crops centred on image pixels, mirrored at random."""
        out = np.zeros((batch, size, size), np.float32)
        for b in range(batch):
            pool = frames if frames is not None else self.by_file[int(rng.integers(0, len(self.by_file)))]
            f = pool[int(rng.integers(0, len(pool)))]
            out[b] = random_crop(f, rng, size) / 255.0
            if rng.random() < 0.5:
                out[b] = out[b, :, ::-1]
        return torch.from_numpy(out)[:, None]


def random_crop(frame: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size`` crop of ``frame`` (H, W) centred on a random non-black pixel, kept inside the frame."""
    h, w = frame.shape
    ys, xs = np.nonzero(frame > 8)
    k = int(rng.integers(0, len(ys))) if len(ys) else 0
    cy, cx = (int(ys[k]), int(xs[k])) if len(ys) else (h // 2, w // 2)
    y0 = min(max(cy - size // 2, 0), max(h - size, 0))
    x0 = min(max(cx - size // 2, 0), max(w - size, 0))
    crop = frame[y0:y0 + size, x0:x0 + size]
    return np.pad(crop, ((0, size - crop.shape[0]), (0, size - crop.shape[1])))


def _encoder_features(model: AnatomyNet, x: torch.Tensor) -> list[torch.Tensor]:
    u = model.unet
    f0 = u.conv_0(x)
    f1 = u.down_1(f0)
    f2 = u.down_2(f1)
    return [f0, f1, f2]


class PatchNCE(nn.Module):
    """CUT's patch-wise InfoNCE: for each layer, features at ``patches`` random places of the output
    must match the input's features at the same place against the input's other places. One
    two-layer projection head per layer. Inputs: lists of (B, C_l, H_l, W_l) feature maps."""

    def __init__(self, channels: list[int], dim: int = 64):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels)

    def forward(self, source: list[torch.Tensor], output: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        losses = []
        for head, fs, fo in zip(self.heads, source, output):
            b, c, h, w = fs.shape
            n = min(NCE_PATCHES, h * w)
            idx = torch.randperm(h * w, generator=generator)[:n].to(fs.device)
            q = F.normalize(head(fo.flatten(2)[:, :, idx].transpose(1, 2)), dim=-1)   # (B, n, D)
            k = F.normalize(head(fs.flatten(2)[:, :, idx].transpose(1, 2)), dim=-1).detach()
            logits = torch.bmm(q, k.transpose(1, 2)) / NCE_TEMPERATURE                 # (B, n, n)
            target = torch.arange(n, device=fs.device).expand(b, n)
            losses.append(F.cross_entropy(logits.flatten(0, 1), target.flatten()))
        return torch.stack(losses).mean()


class UnpairedJob(FramesJob):
    """Simulation -> real translation without pairs (see the module docstring)."""

    network = "enhance"
    mode = "unpaired"

    def __init__(self, data: str, config: EnhanceConfig, seed: int, device: torch.device, rank: Rank,
                 real_folder: str | Path, anatomy_weights: str | Path | None = None, max_items: int | None = None):
        super().__init__(data, config, seed, device, rank, max_items)
        self.real = RealFrames(real_folder, short_side=min(self.train_set.lq.shape[1:]))
        if not self.real.held_out:
            raise UsgenInputError(real_folder, "needs a cine (several frames) so frames can be held out for the "
                                               "domain classifier")
        self.anatomy, self.anatomy_path = load_anatomy(anatomy_weights, device)
        torch.manual_seed(seed)
        self.model = generator(config).to(device)
        self.disc = discriminator(config, 1).to(device)  # real frames come without maps: image only
        channels = [f.shape[1] for f in _encoder_features(self.anatomy, torch.zeros(1, 1, 64, 64, device=device))]
        self.nce = PatchNCE(channels).to(device)
        self.g = wrap(self.model, rank, device)
        self.d = wrap(self.disc, rank, device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(list(self.model.parameters()) + list(self.nce.parameters()), lr=config.lr,
                                      betas=betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=betas)
        self.adv = PatchAdversarialLoss(criterion="least_squares")  # CUT's LSGAN
        self.ce = nn.CrossEntropyLoss()

    def data_note(self) -> str:
        return (f"; real: {len(self.real.train)} frames ({len(self.real.held_out)} held out) of "
                f"{', '.join(self.real.files)}")

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model, "discriminator": self.disc, "nce": self.nce}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def make_batch(self, step: int, rank: int) -> dict[str, torch.Tensor]:
        rng = self.step_rng(step, rank)
        batch = self.train_set.random_crops(rng, self.config.batch, self.config.patch)
        batch["real"] = self.real.crops(rng, self.config.batch, min(self.config.patch, *batch["lq"].shape[-2:]))
        batch["nce_seed"] = torch.tensor(int(rng.integers(1 << 62)))
        return batch

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        b = {k: v.to(self.device) for k, v in batch.items() if k != "nce_seed"}
        fake = enhance_frames(self.g, b, self.config.variant)
        g_adv = self.adv(self.d(fake * 2 - 1)[-1], target_is_real=True, for_discriminator=False)
        gen = torch.Generator().manual_seed(int(batch["nce_seed"]))
        nce = self.nce(_encoder_features(self.anatomy, b["lq"]), _encoder_features(self.anatomy, fake), gen)
        labels = torch.where(b["fov"][:, 0] > 0, b["labels"], torch.zeros_like(b["labels"]))
        anatomy = self.ce(self.anatomy(fake), labels)
        g_loss = g_adv + self.config.nce_weight * nce + self.config.anatomy_weight * anatomy
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        d_fake = self.d(fake.detach() * 2 - 1)[-1]
        d_real = self.d(b["real"] * 2 - 1)[-1]
        d_loss = 0.5 * (self.adv(d_fake, target_is_real=False, for_discriminator=True)
                        + self.adv(d_real, target_is_real=True, for_discriminator=True))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return {"g_adv": g_adv.item(), "nce": nce.item(), "anatomy_ce": anatomy.item(), "d_loss": d_loss.item()}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Anatomy Dice of translated validation frames against their simulation's labels (and of the raw
        simulation, for reference), and the domain classifier's held-out accuracy when training ends."""
        from USGenLib.enhance.evaluate import tissue_dice

        self.model.eval()
        b = self._validation_batch()
        out = enhance_frames(self.model, b, self.config.variant)
        figures = {"val_dice_translated": tissue_dice(self.anatomy, out, b["labels"], b["fov"]),
                   "val_dice_simulation": tissue_dice(self.anatomy, b["lq"], b["labels"], b["fov"])}
        self.model.train()
        return figures

    def domain_figures(self, steps: int = 300) -> dict[str, float]:
        """Held-out accuracy of domain classifiers: raw simulation vs real, and translated vs real."""
        self.model.eval()
        with torch.no_grad():
            translated_train = translate_frames(self.model, self.train_set, self.config.variant, self.device,
                                                limit=256, seed=self.seed)
            translated_val = translate_frames(self.model, self.val_set, self.config.variant, self.device,
                                              limit=128, seed=self.seed + 1)
        self.model.train()
        raw_train = _frames_of(self.train_set.lq, 256, self.seed)
        raw_val = _frames_of(self.val_set.lq, 128, self.seed + 1)
        return {"domain_acc_simulation": domain_accuracy(raw_train, self.real.train, raw_val, self.real.held_out,
                                                         steps, self.seed),
                "domain_acc_translated": domain_accuracy(translated_train, self.real.train, translated_val,
                                                         self.real.held_out, steps, self.seed)}


def _frames_of(frames: np.ndarray, limit: int, seed: int) -> list[np.ndarray]:
    pick = np.random.default_rng(seed).permutation(len(frames))[:limit]
    return [frames[i] for i in np.sort(pick)]


def translate_frames(model: nn.Module, frames, variant: str, device: torch.device, limit: int, seed: int,
                     batch: int = 8) -> list[np.ndarray]:
    """Up to ``limit`` whole frames of a PairFrames split through ``model``, as uint8 (H, W) arrays."""
    pick = np.sort(np.random.default_rng(seed).permutation(len(frames))[:limit])
    out = []
    for s in range(0, len(pick), batch):
        t = {k: v.to(device) for k, v in frames.tensors(pick[s:s + batch]).items()}
        y = enhance_frames(model, t, variant)
        out.extend((y[:, 0].clamp(0, 1) * 255).round().byte().cpu().numpy())
    return out


DOMAIN_PATCH = 64


def domain_accuracy(sim_train: list[np.ndarray], real_train: list[np.ndarray], sim_test: list[np.ndarray],
                    real_test: list[np.ndarray], steps: int = 300, seed: int = 0, batch: int = 32) -> float:
    """Accuracy of a small CNN (MONAI Classifier) trained on 64x64 crops to tell the simulated (or
    translated) frames from the real ones, scored on balanced crops of the held-out frames: 0.5 is
    chance, 1.0 fully separable."""
    from monai.networks.nets import Classifier

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = Classifier(in_shape=(1, DOMAIN_PATCH, DOMAIN_PATCH), classes=1, channels=(8, 16, 32, 32),
                     strides=(2, 2, 2, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def crops(frames: list[np.ndarray], n: int, r: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(np.stack([random_crop(frames[int(r.integers(0, len(frames)))], r, DOMAIN_PATCH)
                                          for _ in range(n)]).astype(np.float32) / 255.0)[:, None]

    half = batch // 2
    target = torch.cat([torch.zeros(half, 1), torch.ones(half, 1)])
    for _ in range(steps):
        x = torch.cat([crops(sim_train, half, rng), crops(real_train, half, rng)])
        loss = loss_fn(net(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    test_rng = np.random.default_rng(seed + 1)
    with torch.no_grad():
        x = torch.cat([crops(sim_test, 256, test_rng), crops(real_test, 256, test_rng)])
        pred = (net(x) > 0).float()
    truth = torch.cat([torch.zeros(256, 1), torch.ones(256, 1)])
    return float((pred == truth).float().mean())
