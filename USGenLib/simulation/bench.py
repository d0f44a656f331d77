"""`usgen bench simulate`: frames per second of the simulator on a 256^3 phantom, and peak memory.

Times frames of a sweep (batched as the CLI runs them) after one warm-up frame, for low and high
quality at 256x256 and 512x512 output with the default convex probe. The volume is the abdomen
phantom at 256^3 voxels (1.1 mm). Setup (property grids, texture, scan-conversion map) is timed
separately: it is paid once per volume and probe.
"""

from __future__ import annotations

import time

import torch

from USGenLib.limits import peak_rss_mb
from USGenLib.progress import progress


def bench_simulate(volume_size: int = 256, frames_low: int = 60, frames_high: int = 10,
                   sizes: tuple[int, ...] = (256, 512), seed: int = 0) -> dict:
    """Run the benchmark; returns fps_low_256, fps_high_256, fps_low_512, fps_high_512, peak_rss_mb
    and details (setup times, threads, device)."""
    from USGenLib.simulation.phantoms import make_phantom
    from USGenLib.simulation.simulate import Simulator
    from USGenLib.simulation.sweep import sweep_poses

    t0 = time.perf_counter()
    n = int(volume_size)
    volume = make_phantom("abdomen", seed=seed, shape=(n, n, n), spacing=(282.0 / n,) * 3)
    result: dict = {"phantom_s": round(time.perf_counter() - t0, 2)}
    details = {}
    jobs = [(q, s) for s in sizes for q in ("low", "high")]
    with progress(len(jobs), "bench simulate", unit="run") as rep:
        for quality, size in jobs:
            t1 = time.perf_counter()
            sim = Simulator(volume, "convex", quality, size=(size, size), seed=seed)
            setup = time.perf_counter() - t1
            frames = frames_low if quality == "low" else frames_high
            poses = sweep_poses(sim.default_pose(), frames, span_mm=40.0)
            sim.renderer.render(poses[:1])  # warm-up
            chunk = sim.renderer.frames_per_chunk
            t2 = time.perf_counter()
            for start in range(0, frames, chunk):
                out = sim.renderer.render(poses[start:start + chunk])
                _ = out["bmode"].cpu()
            elapsed = time.perf_counter() - t2
            key = f"fps_{quality}_{size}"
            result[key] = round(frames / elapsed, 2)
            E, R, L, S = sim.renderer.beam.shape
            details[key] = {"frames": frames, "seconds": round(elapsed, 3), "setup_s": round(setup, 3),
                            "ray_samples_per_frame": E * R * L * S, "scanlines": L, "samples": S, "rays": R,
                            "layers": E, "batch": chunk}
            del sim, out
            rep.update(1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["details"] = details
    result["volume_voxels"] = [n, n, n]
    result["torch_threads"] = torch.get_num_threads()
    result["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return result


def format_bench_simulate(result: dict) -> str:
    lines = [f"usgen bench simulate: {result['volume_voxels'][0]}^3 abdomen phantom, convex probe, "
             f"{result['device']}, {result['torch_threads']} torch threads (phantom built in {result['phantom_s']} s)"]
    for key, d in result["details"].items():
        lines.append(f"  {key:<14} {result[key]:8.2f} frames/s   ({d['frames']} frames in {d['seconds']} s; "
                     f"{d['rays']} rays x {d['layers']} layers x {d['scanlines']} lines x {d['samples']} samples "
                     f"= {d['ray_samples_per_frame']:,} ray samples/frame; setup {d['setup_s']} s)")
    lines.append(f"  peak RSS       {result['peak_rss_mb']:8.1f} MB")
    return "\n".join(lines)
