"""``usgen enhance eval``: the enhancement paper's figures on the test split, and on an unseen CT.

Per test frame, inside the FoV: PSNR, SSIM and patch-KL (50-bin histograms in 32x32 patches) of the
low-quality simulation and of each variant's output against the high-quality target; over the set,
the Frechet distance of the anatomy network's features (bootstrapped for its spread); Wilcoxon
signed-rank p-values between every pair of rows (paired by frame), as the paper tests its variants.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from USGenLib.enhance.networks import VARIANTS, AnatomyNet

METRICS = ("psnr", "ssim", "patch_kl")
BUNDLED_NAMES = {"M": "M", "MS": "MS", "MSA": "default"}  # Resources/weights/enhance/<name>.safetensors
BOOTSTRAPS = 20
CT_SEED = 424242      # the unseen CT: an abdomen phantom seed no data set draws (they draw below 2**31 from their own streams)
CT_FRAMES = 8


@torch.no_grad()
def tissue_dice(model: AnatomyNet, image: torch.Tensor, labels: torch.Tensor, fov: torch.Tensor) -> float:
    """Mean Dice over the tissues present (background 0 excluded) of the anatomy network's labels of
    ``image`` (B, 1, H, W) against ``labels`` (B, H, W), inside the FoV."""
    from monai.metrics import DiceMetric
    from torch.nn.functional import one_hot

    from USGenLib.enhance.networks import N_TISSUES

    pred = model(image).argmax(1) * (fov[:, 0] > 0)
    metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=True)
    value = metric(one_hot(pred, N_TISSUES).permute(0, 3, 1, 2), one_hot(labels.long(), N_TISSUES).permute(0, 3, 1, 2))
    return float(value.nanmean())


def summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "p5": float(np.percentile(v, 5)),
            "p95": float(np.percentile(v, 95)), "n": int(len(v))}


def frame_metrics(output: np.ndarray, target: np.ndarray, fov: np.ndarray) -> dict[str, list[float]]:
    """Per-frame PSNR, SSIM, patch-KL of (T, H, W) uint8 ``output`` against ``target`` inside ``fov``."""
    from USGenLib.metrics import patch_kl, psnr, ssim

    out = {k: [] for k in METRICS}
    for o, t in zip(output, target):
        out["psnr"].append(psnr(o, t, fov))
        out["ssim"].append(ssim(o, t, fov))
        out["patch_kl"].append(patch_kl(t, o, fov))
    return out


@torch.no_grad()
def anatomy_features(model: AnatomyNet, frames: np.ndarray, device: torch.device, batch: int = 16) -> np.ndarray:
    """(T, C) anatomy-network features of (T, H, W) uint8 frames (padded to multiples of 16)."""
    from USGenLib.enhance.inputs import pad_to_multiple

    feats = []
    for s in range(0, len(frames), batch):
        x = torch.from_numpy(frames[s:s + batch].astype(np.float32) / 255.0)[:, None]
        feats.append(model.features(pad_to_multiple(x, 16)[0].to(device)).cpu().numpy())
    return np.concatenate(feats)


def frechet_summary(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """Frechet distance of the two feature sets, and its bootstrap spread (frames resampled)."""
    from USGenLib.metrics import frechet_distance

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(BOOTSTRAPS):
        i, j = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        boots.append(frechet_distance(a[i], b[j]))
    return {"value": frechet_distance(a, b), **{k: v for k, v in summary(boots).items() if k != "n"},
            "n": int(len(a))}


def _wilcoxon(rows: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    from scipy.stats import wilcoxon

    tests = {}
    for a, b in combinations(rows, 2):
        tests[f"{a} vs {b}"] = {}
        for m in METRICS:
            x, y = np.asarray(rows[a][m]), np.asarray(rows[b][m])
            ok = np.isfinite(x) & np.isfinite(y)
            diff = x[ok] - y[ok]
            tests[f"{a} vs {b}"][m] = float(wilcoxon(x[ok], y[ok]).pvalue) if np.any(diff != 0) else 1.0
    return tests


def _score(outputs: dict[str, np.ndarray], target: np.ndarray, fov_per_frame: np.ndarray, anatomy: AnatomyNet,
           device: torch.device) -> dict:
    """Per-row summaries, per-frame values and Wilcoxon tests for ``outputs`` (row -> (T, H, W) uint8)."""
    per_frame = {row: {k: [] for k in METRICS} for row in outputs}
    for row, frames in outputs.items():
        for t in range(len(frames)):
            vals = frame_metrics(frames[t:t + 1], target[t:t + 1], fov_per_frame[t])
            for k in METRICS:
                per_frame[row][k] += vals[k]
    target_feats = anatomy_features(anatomy, target, device)
    table = {}
    for row, frames in outputs.items():
        table[row] = {k: summary(per_frame[row][k]) for k in METRICS}
        table[row]["frechet"] = frechet_summary(anatomy_features(anatomy, frames, device), target_feats)
    return {"table": table, "wilcoxon": _wilcoxon(per_frame), "per_frame": per_frame}


def _default_weights() -> list[Path]:
    from USGenLib.train.weights import bundled_weights

    return [bundled_weights("enhance", BUNDLED_NAMES[v]) for v in VARIANTS]


def evaluate(data: str | Path, weights: list[str | Path] | None = None, anatomy_weights: str | Path | None = None,
             device: str = "auto", split: str = "test", max_items: int | None = None, unseen_ct: bool = True) -> dict:
    """The evaluation (see the module docstring); rows are "low quality" and each weights file's
    variant (or file name when two share a variant)."""
    from USGenLib.enhance.apply import enhance_arrays, load_enhancer
    from USGenLib.enhance.data import PairFrames
    from USGenLib.enhance.networks import load_anatomy

    paths = [Path(w) for w in weights] if weights else _default_weights()
    enhancers = [load_enhancer(p, device) for p in paths]
    names = [e.config.variant for e in enhancers]
    if len(set(names)) < len(names):
        names = [f"{e.config.variant} ({p.name})" for e, p in zip(enhancers, paths)]
    anatomy, anatomy_path = load_anatomy(anatomy_weights, enhancers[0].device)
    frames = PairFrames(data, split, max_items)
    outputs = {"low quality": frames.lq}
    for name, enh in zip(names, enhancers):
        out = np.zeros_like(frames.lq)
        for item in np.unique(frames.item):
            idx = np.nonzero(frames.item == item)[0]
            out[idx] = enhance_arrays(enh, frames.lq[idx], frames.fov[idx[0]], frames.labels[idx],
                                      frames.attenuation[idx].astype(np.float32))
        outputs[name] = out
    scored = _score(outputs, frames.hq, frames.fov, anatomy, enhancers[0].device)
    result = {"split": split, "data": str(data), "sweeps": int(len(frames.ids)), "frames": int(len(frames)),
              "weights": {n: str(p) for n, p in zip(names, paths)}, "anatomy_weights": str(anatomy_path),
              "device": str(enhancers[0].device), **{k: scored[k] for k in ("table", "wilcoxon")},
              "per_frame": scored["per_frame"]}
    if unseen_ct:
        result["unseen_ct"] = unseen_ct_check(enhancers, names, anatomy)
    return result


def unseen_ct_check(enhancers, names: list[str], anatomy: AnatomyNet, size: int = 256) -> dict:
    """The same figures on a CT no network saw: a synthetic abdomen CT (HU, through the simulator's
    CT path rather than the label-map path the training phantoms take) with its own seed, swept by a
    convex probe, low quality enhanced against its own high-quality simulation."""
    from USGenLib.datasets.enhance_pairs import PHANTOM_SHAPE
    from USGenLib.enhance.apply import enhance_arrays
    from USGenLib.simulation import Simulator, make_phantom, sweep_poses
    from USGenLib.simulation.phantoms import phantom_to_ct

    ct = phantom_to_ct(make_phantom("abdomen", seed=CT_SEED, shape=PHANTOM_SHAPE))
    sims = {}
    for quality in ("low", "high"):
        sim = Simulator(ct, "convex", quality, size=(size, size), seed=CT_SEED, device="cpu")
        sims[quality] = sim.simulate(sweep_poses(sim.default_pose(), CT_FRAMES, span_mm=30.0), progress_stage=None)
    lq, hq = sims["low"], sims["high"]
    fov = lq.fov_mask.array.reshape(size, size) > 0
    outputs = {"low quality": np.asarray(lq.bmode.frames)}
    for name, enh in zip(names, enhancers):
        outputs[name] = enhance_arrays(enh, outputs["low quality"], fov, np.asarray(lq.labels.frames),
                                       np.asarray(lq.attenuation.frames, np.float32))
    scored = _score(outputs, np.asarray(hq.bmode.frames), np.repeat(fov[None], CT_FRAMES, 0), anatomy,
                    enhancers[0].device)
    return {"volume": f"abdomen phantom seed {CT_SEED} as CT (HU)", "frames": CT_FRAMES, "table": scored["table"],
            "wilcoxon": scored["wilcoxon"]}


def _fmt(s: dict, digits: int) -> str:
    if not s.get("n"):
        return "-"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} ({s['p5']:.{digits}f}-{s['p95']:.{digits}f})"


def table_rows(table: dict) -> list[dict]:
    rows = []
    for name, figs in table.items():
        fd = figs["frechet"]
        rows.append({"input vs high quality": name, "PSNR dB": _fmt(figs["psnr"], 2), "SSIM": _fmt(figs["ssim"], 3),
                     "patch-KL": _fmt(figs["patch_kl"], 3),
                     "Frechet distance": f"{fd['value']:.3g} (bootstrap {fd['p5']:.3g}-{fd['p95']:.3g})"})
    return rows


def wilcoxon_rows(tests: dict) -> list[dict]:
    return [{"pair": pair, **{f"p {m}": f"{p:.1e}" for m, p in ps.items()}} for pair, ps in tests.items()]


def format_eval(result: dict) -> str:
    lines = [f"usgen enhance eval: {result['frames']} frames of {result['sweeps']} sweeps ({result['split']} split), "
             f"in the FoV; mean ± std (5th-95th percentile)"]
    for title, part in [("", result), ("unseen CT: ", result.get("unseen_ct"))]:
        if not part:
            continue
        if title:
            lines += ["", f"{title}{part['volume']}, {part['frames']} frames"]
        for row in table_rows(part["table"]):
            lines.append("  " + " | ".join(f"{k} {v}" if k != "input vs high quality" else f"{v:<14}"
                                           for k, v in row.items()))
        lines.append("  Wilcoxon signed-rank p (paired by frame):")
        for row in wilcoxon_rows(part["wilcoxon"]):
            lines.append("    " + " | ".join(f"{k} {v}" for k, v in row.items()))
    return "\n".join(lines)


def card_tables(result: dict, command: str) -> dict:
    """The evaluation as model-card fields."""
    tables = {f"Test split: {result['frames']} frames of {result['sweeps']} sweeps, against the high-quality "
              "simulation, in the FoV (the command: figures, eval_command)": table_rows(result["table"]),
              "Wilcoxon signed-rank p-values (paired by frame)": wilcoxon_rows(result["wilcoxon"])}
    if result.get("unseen_ct"):
        tables[f"Unseen CT: {result['unseen_ct']['volume']}"] = table_rows(result["unseen_ct"]["table"])
    best = result["table"]
    figures = {"eval_command": command, "eval_frames": result["frames"]}
    for name, figs in best.items():
        figures[f"{name} PSNR"] = round(figs["psnr"]["mean"], 2)
        figures[f"{name} patch-KL"] = round(figs["patch_kl"]["mean"], 4)
    return {"figures": figures, "tables": tables}
