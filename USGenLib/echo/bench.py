"""``usgen bench echo``: seconds per generated 32-frame 112x112 clip with the bundled weights, on the
CPU (the figure ``seconds_per_clip``) and on the GPU when one is present; the stages' shares, the
candidate videos drawn, and the CPU time when all of them are drawn."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from USGenLib.echo.generate import generate_clip
from USGenLib.echo.models import load_models

FRAMES = 32


def _time(models, clips: int) -> dict:
    generate_clip(models, "A4C", 55.0, FRAMES, 0, 0, models.config.sample_steps, models.config.guidance)  # warm-up
    seconds, parts, drawn = [], [], []
    for i in range(clips):
        if models.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, _, report = generate_clip(models, "A4C", 55.0, FRAMES, 1, i, models.config.sample_steps,
                                     models.config.guidance)
        if models.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        parts.append(report["timings"])
        drawn.append(len(report["candidate_mask_efs"]))
    return {"seconds_per_clip": float(np.mean(seconds)), "candidates_drawn": float(np.mean(drawn)),
            "stages_s": {k: round(float(np.mean([p[k] for p in parts])), 3) for k in parts[0]}}


def bench_echo(weights_dir=None, clips: int = 3) -> dict:
    models = load_models(weights_dir, "cpu")
    size = models.config.size
    cpu = _time(models, clips)
    # the worst case: every candidate video drawn (no tolerance is ever met)
    worst = _time(replace(models, config=replace(models.config, ef_tolerance=-1.0)), 1)
    result = {"seconds_per_clip": cpu["seconds_per_clip"], "cpu_stages_s": cpu["stages_s"],
              "candidates_drawn": cpu["candidates_drawn"], "ef_candidates": models.config.ef_candidates,
              "seconds_per_clip_all_candidates": worst["seconds_per_clip"], "frames": FRAMES,
              "size": f"{size}x{size}", "steps": models.config.sample_steps, "guidance": models.config.guidance,
              "cpu_threads": torch.get_num_threads(), "gpu_seconds_per_clip": None, "gpu": None}
    if torch.cuda.is_available():
        gpu = _time(load_models(weights_dir, "cuda"), clips)
        result.update(gpu_seconds_per_clip=gpu["seconds_per_clip"], gpu_stages_s=gpu["stages_s"],
                      gpu=torch.cuda.get_device_name(0))
    return result


def format_bench_echo(r: dict) -> str:
    lines = [f"echo generate, {r['frames']} frames {r['size']}, {r['steps']} Euler steps, guidance {r['guidance']:g}:",
             f"  CPU ({r['cpu_threads']} threads): {r['seconds_per_clip']:.2f} s per clip  "
             + " ".join(f"{k} {v:.2f}" for k, v in r["cpu_stages_s"].items())
             + f"  ({r['candidates_drawn']:.1f} candidate videos drawn on average)",
             f"  CPU, all {r['ef_candidates']} candidate videos drawn: "
             f"{r['seconds_per_clip_all_candidates']:.2f} s per clip"]
    if r["gpu"]:
        lines.append(f"  GPU ({r['gpu']}): {r['gpu_seconds_per_clip']:.2f} s per clip")
    return "\n".join(lines)
