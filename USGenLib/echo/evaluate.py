"""``usgen echo eval``: the figures of the paper's evaluation, on the project's own data and networks.

- A-VAE: reconstruction SSIM and PSNR of test-split frames.
- Realism: Frechet distances between held-out (val + test) and generated frames and videos, on the features of
  the project's EF regressor (USGenLib.metrics.frechet_distance: MONAI's FIDMetric, nothing downloaded).
- Labels: the EF regressor's and the segmenter's mask-EF accuracy on the test clips (true EF known).
- Adherence: Dice between each requested ED mask and the segmenter's mask of the generated first
  frame; R^2 and MAE of the requested EF vs the regressed EF, and vs the EF of the segmented masks,
  over requested EFs spread 20..80 %. The masks' EF chooses among a clip's candidate videos, so the
  regressor (a separate network) is the adherence figure; the masks' is reported beside it.
- Downstream: one EF regressor trained on the generated clips alone and one on the training split,
  the same recipe and steps, both scored on the test split (R^2, MAE, RMSE). The generated clips are
  labelled with the bundled EF regressor's EF, as the paper relabels its synthetic sets (section
  4.6); a third regressor, trained on them labelled with the requested EF, is reported beside it.
- Privacy: the share of fresh LIFM candidates the ReId filter rejected, and the share of planted
  training copies it catches (their exact latents, and their pixels re-encoded by the A-VAE).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from USGenLib.echo.autoencoder import decode_frames, encode_frames
from USGenLib.echo.config import VIEWS
from USGenLib.echo.data import EchoCycles, load_cycles
from USGenLib.echo.generate import generate_clip
from USGenLib.echo.labels import mask_ef, segment_frames
from USGenLib.echo.models import EchoModels, load_models
from USGenLib.echo.train import EFJob, ef_scores, video_tensor
from USGenLib.metrics import frechet_distance, psnr, ssim
from USGenLib.progress import track
from USGenLib.train import distributed
from USGenLib.train.devices import resolve_device
from USGenLib.train.loop import LoopSettings, run_loop

PAPER = {  # EchoFlow on EchoNet-Dynamic (A4C, real patients), Table 8: privacy-compliant synthetic vs reproduced real
    "downstream_synthetic_r2": 0.81, "downstream_synthetic_mae": 4.05, "downstream_synthetic_rmse": 5.34,
    "downstream_real_r2": 0.81, "downstream_real_mae": 3.98, "downstream_real_rmse": 5.29,
    "reid_threshold": 0.9997, "seconds_per_64_frame_video_gpu_100_steps": 2.94,
}


@torch.no_grad()
def avae_figures(models: EchoModels, test: EchoCycles, every: int = 4) -> dict[str, float]:
    frames = torch.cat([c[::every] for c in test.cycles])
    recon = decode_frames(models.vae, encode_frames(models.vae, frames.to(models.device))).cpu().numpy()
    truth = frames.float().div(255).numpy()
    return {"avae_ssim": ssim(recon, truth), "avae_psnr": psnr(recon, truth), "avae_frames": int(len(frames))}


@torch.no_grad()
def label_figures(models: EchoModels, test: EchoCycles) -> dict[str, float]:
    """How well the labelling networks measure real (phantom) test clips: the regressor's EF and the EF of
    the segmenter's masks against the true EF, and the segmenter's Dice."""
    c = models.config
    regressed, measured, inter, total = [], [], 0.0, 0.0
    for i in range(len(test)):
        video, truth = test.clip(i, c.frames)
        x = video.float().div(255).to(models.device)
        regressed.append(float(models.ef(x[None, None])))
        masks = segment_frames(models.seg, x)
        measured.append(mask_ef(masks, VIEWS[int(test.views[i])], float(test.pixel_mm[i]))["ef"])
        inter += float((torch.from_numpy(masks).bool() & truth).sum())
        total += float(masks.sum() + truth.sum())
    true = test.ef.numpy()
    reg, seg = ef_scores(np.array(regressed), true), ef_scores(np.array(measured), true)
    return {"ef_regressor_test_r2": reg["r2"], "ef_regressor_test_mae": reg["mae"],
            "mask_ef_test_r2": seg["r2"], "mask_ef_test_mae": seg["mae"], "segmenter_test_dice": 2 * inter / total}


@torch.no_grad()
def regressor_features(models: EchoModels, videos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(video features (N, 2F), frame features (2N, F): each video's first and middle frame)."""
    reg = models.ef
    vid, img = [], []
    for v in videos:
        x = video_tensor(v).to(models.device)
        vid.append(reg.features(x).cpu())
        img.append(reg.frame_features(x)[0, [0, x.shape[2] // 2]].cpu())
    return torch.cat(vid), torch.cat(img)


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """The project's Frechet distance of two feature sets (N, F); NaN when either has under two rows."""
    return frechet_distance(a, b) if min(len(a), len(b)) >= 2 else float("nan")


def train_downstream(data: Path, models: EchoModels, train_set: EchoCycles, steps: int, seed: int,
                     test: EchoCycles) -> dict[str, float]:
    """An EF regressor of the bundled recipe trained from scratch on ``train_set`` (videos from ED), scored on ``test``."""
    device = models.device
    job = EFJob(str(data), models.config, seed, device, distributed.Rank(), train_set=train_set, random_phase=False)
    job.val_set = test
    with tempfile.TemporaryDirectory(prefix="usgen-echo-eval-") as run:
        run_loop(job, Path(run) / "run", LoopSettings(steps=steps, seed=seed, checkpoint_every=steps,
                                                      validate_every=steps, workers=0),
                 distributed.Rank(), device, models.config.to_dict())
    return ef_scores(job.predict(test), test.ef.numpy())


def planted_copies(models: EchoModels, train: EchoCycles, limit: int = 64) -> dict[str, float]:
    """Share of training ED frames the filter rejects: exact latents, and pixels re-encoded."""
    frames = torch.stack([c[0] for c in train.cycles[:limit]]).to(models.device)
    with torch.no_grad():
        z = encode_frames(models.vae, frames)
        again = encode_frames(models.vae, (decode_frames(models.vae, z) * 255).round().to(torch.uint8))
    return {"reid_planted_exact_caught": float(models.reid.rejects(z).float().mean()),
            "reid_planted_reencoded_caught": float(models.reid.rejects(again).float().mean()),
            "reid_planted": int(len(frames))}


def evaluate(data: str | Path, weights_dir: str | Path | None = None, n: int = 60, downstream_steps: int | None = None,
             steps: int | None = None, seed: int = 0, device: str = "auto") -> dict:
    models = load_models(weights_dir, resolve_device(device))
    c = models.config
    steps = steps or c.sample_steps
    test = load_cycles(str(data), "test", c.size)
    train = load_cycles(str(data), "train", c.size)
    result: dict = {"data": str(data), "weights": {k: str(p) for k, p in models.files.items()}, "n": n,
                    "sampling_steps": steps, "guidance": c.guidance, "test_clips": len(test), "train_clips": len(train),
                    "ef_calibration": None if models.ef_calibration is None else
                    {v: [round(float(x), 4) for x in models.ef_calibration[i]] for i, v in enumerate(VIEWS)}}
    result.update(avae_figures(models, test))
    result.update(label_figures(models, test))

    # generated clips: views in turn, requested EFs spread evenly over 20..80 %
    efs = np.linspace(20, 80, n)
    videos, reports, masks = [], [], []
    for i in track(range(n), n, "eval: generate", unit="clip"):
        cine, lv, report = generate_clip(models, VIEWS[i % 3], float(efs[i]), c.frames, seed, i, steps, c.guidance)
        videos.append(torch.from_numpy(cine.frames))
        masks.append(torch.from_numpy(lv.frames > 0))
        reports.append(report)
    requested = np.array([r["requested_ef"] for r in reports])
    regressed = np.array([r["regressed_ef"] for r in reports])
    adherence = ef_scores(regressed, requested)
    masks_ef = np.array([r["mask_ef"] for r in reports])
    by_masks = ef_scores(masks_ef, requested)
    result.update({"mask_dice": float(np.mean([r["mask_dice"] for r in reports])),
                   "ef_adherence_r2": adherence["r2"], "ef_adherence_mae": adherence["mae"],
                   "ef_adherence_masks_r2": by_masks["r2"], "ef_adherence_masks_mae": by_masks["mae"],
                   "seconds_per_clip": float(np.mean([r["seconds"] for r in reports])),
                   "candidates_drawn_mean": float(np.mean([len(r["candidate_mask_efs"]) for r in reports])),
                   "ef_candidates": c.ef_candidates, "ef_tolerance": c.ef_tolerance})
    views = np.array([r["view"] for r in reports])
    for view in VIEWS:                      # the views follow the EF unequally: one figure each
        if (views == view).sum() >= 2:
            result[f"ef_adherence_r2_{view}"] = ef_scores(regressed[views == view], requested[views == view])["r2"]
    rejections = sum(r["reid"]["rejections"] for r in reports)
    result["reid_fresh_rejection_rate"] = rejections / (n + rejections)
    result["reid_threshold"] = models.reid.threshold
    result.update(planted_copies(models, train))

    held_out = [load_cycles(str(data), "val", c.size), test]   # both unseen splits: more clips for covariances
    real_vid, real_img = regressor_features(models, [h.clip(i, c.frames)[0] for h in held_out for i in range(len(h))])
    gen_vid, gen_img = regressor_features(models, videos)
    result["frechet_video"] = frechet(gen_vid, real_vid)
    result["frechet_image"] = frechet(gen_img, real_img)
    # the same distance between training and held-out clips: what real data scores with this many clips
    train_vid, train_img = regressor_features(models, [train.clip(i, c.frames)[0] for i in range(min(n, len(train)))])
    result["frechet_video_train_vs_test"] = frechet(train_vid, real_vid)
    result["frechet_image_train_vs_test"] = frechet(train_img, real_img)

    def synthetic(labels: np.ndarray) -> EchoCycles:
        return EchoCycles(videos, masks, torch.tensor(labels, dtype=torch.float32),
                          torch.tensor([VIEWS.index(r["view"]) for r in reports]),
                          np.full(n, models.fps), np.full(n, models.pixel_mm), [str(i) for i in range(n)])

    ds = downstream_steps or c.ef_steps
    result["downstream_steps"] = ds
    # "synthetic" is the set `echo generate` writes: labelled with its masks' EF (EchoNet's FileList).
    # The paper (section 4.6) relabels with an EF regressor instead, and the requested EFs as labels are
    # the stricter test of the video model: both are trained too
    for name, train_set in (("synthetic", synthetic(masks_ef)), ("synthetic_regressed", synthetic(regressed)),
                            ("synthetic_requested", synthetic(requested)), ("real", train)):
        for k, v in train_downstream(Path(data), models, train_set, ds, seed, test).items():
            result[f"downstream_{name}_{k}"] = v
    result["paper"] = PAPER
    return result


ROWS = [("A-VAE reconstruction SSIM (test frames)", "avae_ssim", None),
        ("A-VAE reconstruction PSNR dB (test frames)", "avae_psnr", None),
        ("Frechet distance, frames (generated vs held-out)", "frechet_image", None),
        ("  same, training vs held-out clips", "frechet_image_train_vs_test", None),
        ("Frechet distance, videos (generated vs held-out)", "frechet_video", None),
        ("  same, training vs held-out clips", "frechet_video_train_vs_test", None),
        ("EF regressor on test clips, R^2 (true EF)", "ef_regressor_test_r2", None),
        ("EF regressor on test clips, MAE %", "ef_regressor_test_mae", None),
        ("Segmenter on test clips, Dice", "segmenter_test_dice", None),
        ("EF of the segmenter's masks on test clips, R^2", "mask_ef_test_r2", None),
        ("LV-mask adherence Dice (requested vs segmented ED)", "mask_dice", None),
        ("EF adherence R^2 (regressed vs requested, 20-80 %)", "ef_adherence_r2", None),
        ("EF adherence MAE % (regressed)", "ef_adherence_mae", None),
        ("  R^2 of A4C clips alone", "ef_adherence_r2_A4C", None),
        ("  R^2 of PSAX clips alone", "ef_adherence_r2_PSAX", None),
        ("  R^2 of PLAX clips alone", "ef_adherence_r2_PLAX", None),
        ("Candidate videos drawn per clip (mean)", "candidates_drawn_mean", None),
        ("EF adherence R^2 (masks' EF, which picks the candidate)", "ef_adherence_masks_r2", None),
        ("EF adherence MAE % (EF of the segmented masks)", "ef_adherence_masks_mae", None),
        ("Downstream EF R^2, trained on synthetic only (masks' EF)", "downstream_synthetic_r2", "downstream_synthetic_r2"),
        ("  same, labelled by the EF regressor", "downstream_synthetic_regressed_r2", None),
        ("  same, labelled with the requested EF", "downstream_synthetic_requested_r2", None),
        ("Downstream EF R^2, trained on the training split", "downstream_real_r2", "downstream_real_r2"),
        ("Downstream EF MAE %, synthetic only (masks' EF)", "downstream_synthetic_mae", "downstream_synthetic_mae"),
        ("  same, labelled by the EF regressor", "downstream_synthetic_regressed_mae", None),
        ("  same, labelled with the requested EF", "downstream_synthetic_requested_mae", None),
        ("Downstream EF MAE %, training split", "downstream_real_mae", "downstream_real_mae"),
        ("Downstream EF RMSE %, synthetic only (masks' EF)", "downstream_synthetic_rmse", "downstream_synthetic_rmse"),
        ("  same, labelled by the EF regressor", "downstream_synthetic_regressed_rmse", None),
        ("  same, labelled with the requested EF", "downstream_synthetic_requested_rmse", None),
        ("Downstream EF RMSE %, training split", "downstream_real_rmse", "downstream_real_rmse"),
        ("ReId threshold (max Pearson correlation)", "reid_threshold", "reid_threshold"),
        ("ReId rejection rate of fresh candidates", "reid_fresh_rejection_rate", None),
        ("ReId: planted training copies caught (exact latents)", "reid_planted_exact_caught", None),
        ("ReId: planted training copies caught (re-encoded pixels)", "reid_planted_reencoded_caught", None)]


def format_eval(result: dict) -> str:
    lines = [f"echo eval: {result['n']} generated clips ({result['sampling_steps']} Euler steps, guidance "
             f"{result['guidance']:g}), {result['test_clips']} test clips of {result['data']}",
             f"{'figure':58s} {'USGen':>9s} {'paper':>9s}"]
    if result.get("ef_calibration"):
        lines.insert(1, "LVFM EF calibration, mask EF = slope x conditioned EF + intercept: " + ", ".join(
            f"{v} {a:.2f} x {b:+.1f}" for v, (a, b) in result["ef_calibration"].items())
            + f"; up to {result['ef_candidates']} candidate videos per clip, tolerance {result['ef_tolerance']:g} %")
    for label, key, paper in ROWS:
        ours = result.get(key)
        if ours is None:                      # per-view rows of an evaluation with too few clips
            continue
        theirs = result["paper"].get(paper) if paper else None
        lines.append(f"{label:58s} {ours:9.3f} {'' if theirs is None else f'{theirs:9.4g}':>9s}")
    return "\n".join(lines)


def card_fields(result: dict, command: str) -> dict:
    """What ``--update-card`` adds to the LVFM model card: every figure and the command that measured them."""
    figures = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"figures": figures, "sections": {"Evaluation": f"`{command}` on {result['data']}:\n\n```\n"
                                                            f"{format_eval(result)}\n```"}}
