"""`usgen bench enhance`: is low-quality simulation + enhancement faster than the high-quality
simulation it imitates? All three are timed in the same run, on the same sweep of the same volume,
at 256x256 and 512x512, after a warm-up; the enhancer runs batched as `usgen enhance` runs it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from USGenLib.limits import peak_rss_mb
from USGenLib.progress import progress


def _time_simulation(sim, poses) -> tuple[float, dict]:
    sim.renderer.render(poses[:1])  # warm-up
    t0 = time.perf_counter()
    result = sim.simulate(poses, progress_stage=None)
    return (time.perf_counter() - t0) / len(poses), result


def bench_enhance(frames: int = 16, weights: str | Path | None = None, volume_size: int = 256,
                  sizes: tuple[int, ...] = (256, 512), device: str = "cpu") -> dict:
    """Milliseconds per frame of each part and the speedups; ``speedup_256`` = high-quality time /
    (low-quality + enhancement time) at 256x256."""
    from USGenLib.enhance.apply import enhance_arrays, load_enhancer
    from USGenLib.simulation import Simulator, make_phantom, sweep_poses

    enhancer = load_enhancer(weights, device)
    n = int(volume_size)
    volume = make_phantom("abdomen", seed=0, shape=(n, n, n), spacing=(282.0 / n,) * 3)
    result: dict = {"frames": frames, "weights": enhancer.weights.name, "variant": enhancer.config.variant,
                    "device": str(enhancer.device), "torch_threads": torch.get_num_threads(),
                    "volume_voxels": [n, n, n]}
    with progress(len(sizes), "bench enhance", unit="size") as bar:
        for size in sizes:
            sims = {q: Simulator(volume, "convex", q, size=(size, size), seed=0) for q in ("low", "high")}
            poses = sweep_poses(sims["low"].default_pose(), frames, span_mm=40.0)
            lq_s, lq = _time_simulation(sims["low"], poses)
            hq_s, _ = _time_simulation(sims["high"], poses)
            image, fov = np.asarray(lq.bmode.frames), lq.fov_mask.array.reshape(size, size) > 0
            maps = (np.asarray(lq.labels.frames), np.asarray(lq.attenuation.frames, np.float32))
            enhance_arrays(enhancer, image[:2], fov, maps[0][:2], maps[1][:2])  # warm-up
            t0 = time.perf_counter()
            enhance_arrays(enhancer, image, fov, *maps)
            enh_s = (time.perf_counter() - t0) / frames
            result[f"ms_low_{size}"] = round(1000 * lq_s, 2)
            result[f"ms_high_{size}"] = round(1000 * hq_s, 2)
            result[f"ms_enhance_{size}"] = round(1000 * enh_s, 2)
            result[f"speedup_{size}"] = round(hq_s / (lq_s + enh_s), 2)
            del sims
            bar.update(1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def format_bench_enhance(r: dict) -> str:
    lines = [f"usgen bench enhance: {r['volume_voxels'][0]}^3 abdomen phantom, convex probe, {r['frames']} frames, "
             f"{r['device']}, {r['torch_threads']} torch threads, weights {r['weights']} ({r['variant']})"]
    for size in (256, 512):
        if f"speedup_{size}" not in r:
            continue
        low, high, enh = r[f"ms_low_{size}"], r[f"ms_high_{size}"], r[f"ms_enhance_{size}"]
        lines.append(f"  {size}x{size}: high quality {high:8.1f} ms/frame | low quality {low:6.1f} + enhance "
                     f"{enh:6.1f} = {low + enh:6.1f} ms/frame | speedup {r[f'speedup_{size}']:.2f}x")
    lines.append(f"  peak RSS {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
