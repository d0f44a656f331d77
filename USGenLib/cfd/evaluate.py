"""``usgen cfd eval``: SSIM and PSNR of CFD removal on a data set's test split, and the real-file checks.

For every clip: the pipeline's output against the ground-truth B-mode over whole frames and inside
the bounding box of the CFD mask, per coverage quartile; the pipeline with the ground-truth mask at
each stage (coarse, + bridge, + refinement: the ablation) and end to end with the detected mask; and
the input's own grey (no removal) as the floor. On pydicom's real power-Doppler files: no colour
left, every pixel outside the mask unchanged, and the fill's grey level against the tissue ring.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from USGenLib.cfd.remove import load_remover, remove_color_flow
from USGenLib.datasets.torch_datasets import CFDDataset
from USGenLib.io import read_cine
from USGenLib.io.luma import luma
from USGenLib.metrics import psnr, ssim
from USGenLib.progress import track

VARIANTS = ("input", "coarse", "bridge", "full", "full_detected_mask")
RING_PX = 6  # width of the tissue ring around the mask used for the real-file grey-level check


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask.any(axis=0))
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def _figures(out: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    ys, xs = _box(mask)
    return {"ssim": ssim(out, truth), "psnr": psnr(out, truth),
            "ssim_mask_box": ssim(out[:, ys, xs], truth[:, ys, xs]), "psnr_mask_box": psnr(out[:, ys, xs], truth[:, ys, xs])}


def _summary(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)])
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)} if v.size else {"n": 0}


def evaluate(data, weights=None, device: str = "auto", split: str = "test", max_items: int | None = None) -> dict:
    removers = {stage: load_remover(weights, device, stage=stage) for stage in ("coarse", "bridge", "full")}
    dataset = CFDDataset(data, split=split)
    rows = dataset.rows[:max_items] if max_items else dataset.rows
    per_clip = []
    for row in track(rows, len(rows), "evaluate", unit="clip"):
        folder = dataset.item_dir(row)
        cfd, truth = read_cine(folder / "cfd.seq.nrrd"), read_cine(folder / "bmode.seq.nrrd").frames
        gt_mask = read_cine(folder / "mask.seq.nrrd").frames.astype(bool)
        outputs = {"input": luma(cfd.frames)}
        for stage, remover in removers.items():
            outputs[stage] = remove_color_flow(cfd, remover, masks=gt_mask)[0].frames
        outputs["full_detected_mask"] = remove_color_flow(cfd, removers["full"])[0].frames
        per_clip.append({"id": row["id"], "quartile": int(row["coverage_quartile"]), "coverage": float(row["coverage"]),
                         **{v: _figures(o, truth, gt_mask) for v, o in outputs.items()}})
    table = {}
    for variant in VARIANTS:
        table[variant] = {}
        for group in ("all", 1, 2, 3, 4):
            clips = [c for c in per_clip if group == "all" or c["quartile"] == group]
            table[variant][str(group)] = {k: _summary([c[variant][k] for c in clips])
                                          for k in ("ssim", "psnr", "ssim_mask_box", "psnr_mask_box")}
    return {"split": split, "clips": len(per_clip), "weights": removers["full"].describe(), "table": table,
            "real_files": real_file_checks(removers["full"]), "per_clip": per_clip}


def real_file_checks(remover) -> list[dict]:
    """pydicom's GE power-Doppler lymph node (RGB and JPEG 2000): colour left, pixels changed outside
    the mask, and the fill's mean and spread against the tissue ring around the mask."""
    from USGenLib.io import bundled_dicom

    results = []
    for name in ("examples_rgb_color.dcm", "examples_jpeg2k.dcm"):
        cine = read_cine(bundled_dicom(name))
        bmode, mask, _ = remove_color_flow(cine, remover)
        out, m = bmode.frames.astype(float), mask.frames.astype(bool)
        ring = ndi.binary_dilation(m, np.ones((1, 2 * RING_PX + 1, 2 * RING_PX + 1), bool)) & ~m
        ring &= luma(np.asarray(cine.frames)) > 0  # tissue, not the black background
        fill, tissue = out[m], out[ring]
        lo, hi = np.percentile(tissue, [10, 90])
        results.append({
            "file": name, "mask_fraction": float(m.mean()),
            "coloured_pixels_left": int(0 if bmode.frames.ndim == 3 else (np.ptp(bmode.frames, axis=-1) > 0).sum()),
            "changed_outside_mask": int((bmode.frames[~m] != luma(np.asarray(cine.frames))[~m]).sum()),
            "fill_mean": float(fill.mean()), "fill_std": float(fill.std()),
            "ring_mean": float(tissue.mean()), "ring_std": float(tissue.std()), "ring_p10": float(lo), "ring_p90": float(hi),
            "fill_mean_within_ring_p10_p90": bool(lo <= fill.mean() <= hi),
            "fill_std_within_half_to_1_5_ring_std": bool(0.5 * tissue.std() <= fill.std() <= 1.5 * tissue.std()),
        })
    return results


def format_eval(result: dict) -> str:
    lines = [f"CFD removal on the {result['split']} split: {result['clips']} clips "
             f"(weights {result['weights']['weights']}, {result['weights']['device']})", "",
             f"{'variant':<20} {'group':<6} {'SSIM':>14} {'PSNR dB':>14} {'SSIM mask box':>15} {'PSNR mask box':>15}"]
    for variant, groups in result["table"].items():
        for group, figs in groups.items():
            if not figs["ssim"].get("n"):
                continue
            cells = [f"{figs[k]['mean']:.3f} ± {figs[k]['std']:.3f}" if "ssim" in k else
                     f"{figs[k]['mean']:.2f} ± {figs[k]['std']:.2f}" for k in ("ssim", "psnr", "ssim_mask_box", "psnr_mask_box")]
            label = "all" if group == "all" else f"Q{group}"
            lines.append(f"{variant:<20} {label:<6} {cells[0]:>14} {cells[1]:>14} {cells[2]:>15} {cells[3]:>15}")
    lines += ["", "Real power-Doppler files (pydicom):"]
    for r in result["real_files"]:
        lines.append(f"  {r['file']}: mask {100 * r['mask_fraction']:.2f} %, coloured pixels left {r['coloured_pixels_left']}, "
                     f"changed outside mask {r['changed_outside_mask']}, fill {r['fill_mean']:.1f} ± {r['fill_std']:.1f} vs "
                     f"ring {r['ring_mean']:.1f} ± {r['ring_std']:.1f} (p10-p90 {r['ring_p10']:.0f}-{r['ring_p90']:.0f}): "
                     f"mean {'within' if r['fill_mean_within_ring_p10_p90'] else 'OUTSIDE'}, "
                     f"spread {'within' if r['fill_std_within_half_to_1_5_ring_std'] else 'OUTSIDE'}")
    return "\n".join(lines)


STAGE_NAMES = {"input": "no removal (the input's grey)", "coarse": "coarse only", "bridge": "coarse + bridge",
               "full": "coarse + bridge + refinement", "full_detected_mask": "full pipeline, detected mask"}


def card_tables(result: dict, command: str) -> dict:
    """The evaluation as model-card fields: the ablation and the per-quartile table, real-file checks."""
    def cell(figs, key):
        f = figs[key]
        return f"{f['mean']:.3f} ± {f['std']:.3f}" if "ssim" in key else f"{f['mean']:.2f} ± {f['std']:.2f}"

    ablation = [{"pipeline (ground-truth mask unless said)": STAGE_NAMES[v], "SSIM whole frame": cell(g["all"], "ssim"),
                 "SSIM in mask box": cell(g["all"], "ssim_mask_box"), "PSNR dB whole": cell(g["all"], "psnr"),
                 "PSNR dB in mask box": cell(g["all"], "psnr_mask_box")} for v, g in result["table"].items()]
    quartiles = [{"coverage quartile": f"Q{q}", "clips": result["table"]["full_detected_mask"][str(q)]["ssim"]["n"],
                  "SSIM whole frame": cell(result["table"]["full_detected_mask"][str(q)], "ssim"),
                  "SSIM in mask box": cell(result["table"]["full_detected_mask"][str(q)], "ssim_mask_box"),
                  "coarse + bridge SSIM": cell(result["table"]["bridge"][str(q)], "ssim")}
                 for q in (1, 2, 3, 4) if result["table"]["full_detected_mask"][str(q)]["ssim"].get("n")]
    real = [{"file": r["file"], "mask %": round(100 * r["mask_fraction"], 2), "coloured px left": r["coloured_pixels_left"],
             "changed px outside mask": r["changed_outside_mask"], "fill mean ± sd": f"{r['fill_mean']:.1f} ± {r['fill_std']:.1f}",
             "tissue ring mean ± sd (p10-p90)": f"{r['ring_mean']:.1f} ± {r['ring_std']:.1f} ({r['ring_p10']:.0f}-{r['ring_p90']:.0f})"}
            for r in result["real_files"]]
    return {"figures": {"eval_command": command, "eval_clips": result["clips"], "eval_split": result["split"],
                        "ssim_whole_frame": result["table"]["full_detected_mask"]["all"]["ssim"]["mean"],
                        "ssim_mask_box": result["table"]["full_detected_mask"]["all"]["ssim_mask_box"]["mean"]},
            "tables": {f"Ablation on the {result['split']} split ({result['clips']} clips; `{command}`)": ablation,
                       "Per coverage quartile (full pipeline, detected mask)": quartiles,
                       "Real power-Doppler files (pydicom)": real}}
