"""``usgen bench cfd``: CFD-removal frames per second at 256x256 and peak memory.

A synthetic 256x256 colour-flow clip (the data set's generator, mid coverage) goes through exactly
what ``usgen cfd remove`` runs between reading and writing: mask detection, crops, networks, scaling
back, compositing. One warm-up window is not timed. The figure ``fps_256`` is on the CPU; a CUDA GPU,
when present, is timed too (``fps_256_cuda``).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from USGenLib.cfd.detect import removal_mask
from USGenLib.cfd.remove import load_remover, remove_color_flow
from USGenLib.datasets.cfd_scene import make_cfd_clip
from USGenLib.limits import peak_rss_mb


def _time_removal(cine, remover, repeats: int = 2) -> float:
    w = remover.config.window
    remove_color_flow(replace(cine, frames=cine.frames[:w], times=cine.times[:w]), remover)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        remove_color_flow(cine, remover)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_cfd(frames: int = 64, weights=None, coverage: float = 0.12, seed: int = 0) -> dict:
    clip = make_cfd_clip(np.random.default_rng(seed), size=(256, 256), frames=frames, target_coverage=coverage,
                         scene_kind="vascular")
    cine = clip.cfd
    mask = removal_mask(cine.frames)
    t0 = time.perf_counter()
    removal_mask(cine.frames)
    mask_s = time.perf_counter() - t0
    cpu = load_remover(weights, "cpu")
    seconds = _time_removal(cine, cpu)
    result = {
        "fps_256": round(frames / seconds, 2),
        "ms_per_frame_256": round(1000 * seconds / frames, 2),
        "mask_ms_per_frame": round(1000 * mask_s / frames, 2),
        "frames": frames, "mask_coverage": round(float(mask.mean()), 4),
        "crop_fraction": round(float(_crop_area(mask)), 4),
        "threads": torch.get_num_threads(), "config": cpu.config.name, "weights": cpu.weights.name,
    }
    if torch.cuda.is_available():
        gpu = load_remover(weights, "cuda")
        result["fps_256_cuda"] = round(frames / _time_removal(cine, gpu), 2)
        result["gpu"] = torch.cuda.get_device_name()
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def _crop_area(mask: np.ndarray) -> float:
    """Fraction of the frame inside the colour's bounding box: what the networks actually compute on."""
    ys, xs = np.nonzero(mask.any(axis=0))
    return (np.ptp(ys) + 1) * (np.ptp(xs) + 1) / mask[0].size if len(ys) else 0.0


def format_bench_cfd(r: dict) -> str:
    lines = [f"CFD removal, 256x256, {r['frames']} frames, mask {100 * r['mask_coverage']:.1f} % of the frame, "
             f"colour box {100 * r['crop_fraction']:.0f} % ({r['config']} weights {r['weights']}, {r['threads']} threads)",
             f"  CPU: {r['fps_256']:.1f} frames/s ({r['ms_per_frame_256']:.1f} ms/frame; mask detection "
             f"{r['mask_ms_per_frame']:.2f} ms/frame)"]
    if "fps_256_cuda" in r:
        lines.append(f"  GPU ({r['gpu']}): {r['fps_256_cuda']:.1f} frames/s")
    lines.append(f"  peak RSS {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
