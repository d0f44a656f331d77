"""``usgen echo generate``: view + EF -> labelled synthetic echo clips.

Per clip: an ED LV mask of the requested view is drawn from the LIFM's bank; the LIFM samples the
anatomy latent for it (view and mask, classifier-free guidance); the ReId filter rejects candidates
too close to a training heart and they are redrawn; the LVFM animates the anatomy at the requested
EF (through its calibration, echo/calibration.py); the A-VAE decodes the video and the segmenter
labels each frame. The LVFM's contraction varies with its noise, so further videos are drawn until
one's LV masks show the requested EF within ``ef_tolerance`` (at most ``ef_candidates``; the closest
is kept). The EF regressor labels the kept video. Geometry: square pixels of the training data's
size, frame times at its frame rate.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from USGenLib.datasets.echonet import write_echonet_tables
from USGenLib.datasets.lv_measure import disc_tracing
from USGenLib.echo.autoencoder import decode_frames
from USGenLib.echo.calibration import conditioning_ef
from USGenLib.echo.config import VIEWS
from USGenLib.echo.flow import euler_sample
from USGenLib.echo.labels import mask_ef, segment_frames
from USGenLib.echo.models import EchoModels
from USGenLib.echo.video_flow import LatentVideoFlow
from USGenLib.errors import UsgenInputError
from USGenLib.progress import progress
from USGenLib.types import Cine

MAX_REDRAWS = 32      # ReId rejections in a row before a clip is given up (the filter is never bypassed)
EF_RANGE = (5.0, 95.0)


def clip_generator(seed: int, index: int) -> torch.Generator:
    """The random stream of clip ``index`` of a request: the same seed gives the same clips."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


@torch.no_grad()
def sample_anatomy(models: EchoModels, view: int, gen: torch.Generator, steps: int,
                   guidance: float) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """(anatomy latent (4, h, w), requested ED mask (H, W) uint8, ReId rejections, its ReId similarity)."""
    dev, c = models.device, models.config
    choices = torch.nonzero(models.bank_views == view)[:, 0]
    if not len(choices):
        raise UsgenInputError(models.files["lifm"], f"holds no {VIEWS[view]} masks (trained without that view)")
    for rejections in range(MAX_REDRAWS):
        mask = models.mask_bank[choices[int(torch.randint(len(choices), (1,), generator=gen))]]
        noise = torch.randn((1, c.latent_channels, c.latent_size, c.latent_size), generator=gen).to(dev)
        m = mask[None, None].to(dev)
        v = torch.tensor([view], device=dev)

        def velocity(x, t, keep):
            n = len(x)
            return models.lifm(x, t, v.expand(n), m.expand(n, -1, -1, -1), keep)

        z = euler_sample(velocity, noise, steps, guidance)
        similarity = float(models.reid.similarity(z)[0])
        if similarity <= models.reid.threshold:
            return z[0], mask, rejections, similarity
    raise UsgenInputError(models.files["reid"], f"the privacy filter rejected {MAX_REDRAWS} {VIEWS[view]} candidates "
                                                "in a row: these weights reproduce their training hearts")


@torch.no_grad()
def sample_video(lvfm: LatentVideoFlow, anatomy: torch.Tensor, ef: float, frames: int, gen: torch.Generator,
                 steps: int, guidance: float) -> torch.Tensor:
    """(4, T, h, w) latent video of one anatomy (4, h, w), conditioned on ``ef``. The guidance's
    unconditional branch keeps the anatomy and drops the EF: the paper's Table 6 shows dropping the
    anatomy there degrades the video, so guidance sharpens the EF."""
    lat, h, w = anatomy.shape
    noise = torch.randn((1, lat, frames, h, w), generator=gen).to(anatomy.device)
    a = anatomy[None]
    e = torch.tensor([float(ef)], device=anatomy.device)

    def velocity(x, t, keep):
        n = len(x)
        return lvfm(x, t, a.expand(n, -1, -1, -1), e.expand(n), torch.ones_like(keep), keep)

    return euler_sample(velocity, noise, steps, guidance)[0]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


@torch.no_grad()
def generate_clip(models: EchoModels, view: str, ef: float, frames: int, seed: int, index: int, steps: int,
                  guidance: float, candidates: int | None = None) -> tuple[Cine, Cine, dict]:
    """(cine uint8, LV label cine, report) of one clip; at most ``candidates`` videos drawn (default: the
    config's)."""
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return round(clock[-1] - clock[-2], 4)

    gen = clip_generator(seed, index)
    view_index = VIEWS.index(view)
    anatomy, requested, rejections, similarity = sample_anatomy(models, view_index, gen, steps, guidance)
    timings = {"anatomy": lap()}
    c = models.config
    cond = conditioning_ef(models.ef_calibration, models.ef_range, view_index, ef)
    drawn = []
    # in turn, not as one batch: most clips stop at the first or second, and a batch of two cost 2.6 x one on the CPU
    for _ in range(candidates or c.ef_candidates):
        video = sample_video(models.lvfm, anatomy, cond, frames, gen, steps, guidance)
        pixels = decode_frames(models.vae, video.transpose(0, 1))          # (T, H, W) in [0, 1]
        masks = segment_frames(models.seg, pixels)
        drawn.append((pixels, masks, mask_ef(masks, view, models.pixel_mm)))
        if abs(drawn[-1][2]["ef"] - ef) <= c.ef_tolerance:
            break
    pixels, masks, measured = min(drawn, key=lambda d: abs(d[2]["ef"] - ef))
    timings["videos"] = lap()          # sampled, decoded and segmented
    regressed = float(models.ef(pixels[None, None]).item())
    timings["regress"] = lap()
    cine = Cine((pixels.cpu().numpy() * 255).round().astype(np.uint8),
                spacing=(models.pixel_mm, models.pixel_mm, 1.0), times=np.arange(frames) / models.fps,
                meta={"modality": "US", "source": "usgen echo generate (synthetic)", "view": view})
    lv = cine.with_frames(masks)
    lv.meta["content"] = "lv_mask"
    report = {"view": view, "requested_ef": float(ef), "regressed_ef": regressed, "mask_ef": measured["ef"],
              "ed_frame": measured["ed_frame"], "es_frame": measured["es_frame"],
              "mask_edv_ml": measured["edv"], "mask_esv_ml": measured["esv"], "frames": frames,
              "fps": models.fps, "pixel_mm": models.pixel_mm, "seed": seed, "index": index, "steps": steps,
              "guidance": guidance, "conditioning_ef": cond, "candidate_mask_efs": [d[2]["ef"] for d in drawn],
              "mask_dice": dice(requested.numpy(), masks[0]),
              "reid": {"rejections": rejections, "similarity": similarity, "threshold": models.reid.threshold},
              "seconds": clock[-1] - clock[0], "timings": timings}
    return cine, lv, report


def _manifest_text(rows: list[dict]) -> str:
    cols = ("id", "view", "requested_ef", "regressed_ef", "mask_ef", "ed_frame", "es_frame", "mask_dice",
            "reid_rejections", "candidates", "frames", "fps", "seed")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([r["id"], r["view"], f"{r['requested_ef']:.2f}", f"{r['regressed_ef']:.2f}",
                         f"{r['mask_ef']:.2f}", r["ed_frame"], r["es_frame"], f"{r['mask_dice']:.4f}",
                         r["reid"]["rejections"], len(r["candidate_mask_efs"]), r["frames"], f"{r['fps']:.4f}",
                         r["seed"]])
    return buf.getvalue()


def echonet_row(name: str, cine: Cine, lv: Cine, report: dict) -> dict:
    """A FileList/VolumeTracings row (see datasets/echonet.py). EF, volumes and tracings all come from the
    clip's LV masks, so EF = 1 - ESV/EDV as in EchoNet-Dynamic. The paper relabels its synthetic sets
    with an EF regressor (section 4.6) to correct what the video model missed; the masks' EF does the
    same and agrees with the row's volumes (the regressor's EF stays in report.json)."""
    tracings = []
    for frame in (report["es_frame"], report["ed_frame"]):      # EchoNet's order: ES first, ED last
        tr = disc_tracing(lv.frames[frame].astype(bool))
        if tr is not None:
            tracings += [(name + ".avi", *row, frame) for row in tr.rows()]
    return {"_filename": name, "ef": report["mask_ef"], "esv": report["mask_esv_ml"],
            "edv": report["mask_edv_ml"], "height": cine.height, "width": cine.width, "fps": report["fps"],
            "frames": cine.num_frames, "split": "train", "_tracings": tracings}


def clip_requests(view: str, ef: float | tuple[float, float], n: int) -> list[tuple[str, float]]:
    """(view, EF) of each of ``n`` clips: ``view`` "all" takes A4C, PSAX and PLAX in turn; ``ef`` a
    (low, high) pair spreads the EFs evenly over it (a data set rather than one request)."""
    efs = np.linspace(ef[0], ef[1], n) if isinstance(ef, tuple) else np.full(n, float(ef))
    views = [VIEWS[i % len(VIEWS)] for i in range(n)] if view == "all" else [view] * n
    return [(v, round(float(e), 2)) for v, e in zip(views, efs)]


def generate_to_folder(models: EchoModels, out: str | Path, view: str, ef: float | tuple[float, float], n: int,
                       frames: int, seed: int, steps: int, guidance: float,
                       candidates: int | None = None) -> list[Path]:
    """Write the clips (see ``clip_requests``), OUT/manifest.csv and OUT/echonet/ (EchoNet-Dynamic
    layout); all appear at once."""
    from USGenLib.io import write_cine, write_seq_nrrd
    from USGenLib.io.atomic import atomic_folder, atomic_write_text

    rows, echonet = [], []
    with atomic_folder(out) as tmp, progress(n, "generate", unit="clip") as bar:
        (tmp / "echonet" / "Videos").mkdir(parents=True)
        for i, (clip_view, clip_ef) in enumerate(clip_requests(view, ef, n)):
            cine, lv, report = generate_clip(models, clip_view, clip_ef, frames, seed, i, steps, guidance, candidates)
            name = f"{clip_view.lower()}_ef{clip_ef:g}_seed{seed}_{i:03d}"
            report = {"id": name, **report, "device": str(models.device),
                      "weights": {k: str(p) for k, p in models.files.items()}}
            folder = tmp / name
            folder.mkdir()
            write_seq_nrrd(cine, folder / "cine.seq.nrrd")
            write_seq_nrrd(lv, folder / "lv.seq.nrrd", labels=True)
            atomic_write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")
            write_cine(cine, tmp / "echonet" / "Videos" / f"{name}.avi")
            rows.append(report)
            echonet.append(echonet_row(name, cine, lv, report))
            bar.update(1, message=f"{clip_view} EF {report['regressed_ef']:.0f} % (asked {clip_ef:g})")
        write_echonet_tables(echonet, tmp / "echonet")
        atomic_write_text(tmp / "manifest.csv", _manifest_text(rows))
    out = Path(out)
    return [out / r["id"] for r in rows] + [out / "manifest.csv", out / "echonet"]


def lv_overlay(cine: Cine, lv: Cine) -> Cine:
    """RGB preview: the LV mask's outline in red over the grey cine (what an annotator checks)."""
    from scipy import ndimage

    masks = lv.frames.astype(bool)
    edge = masks & ~ndimage.binary_erosion(masks, structure=np.ones((1, 3, 3), bool))
    rgb = np.repeat(cine.frames[..., None], 3, axis=-1)
    rgb[edge] = (255, 40, 40)
    return cine.with_frames(rgb)
