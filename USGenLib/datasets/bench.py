"""`usgen bench dataset`: the CFD (or echo / enhance) generation rate, files written included."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from USGenLib.datasets.generate import DatasetRequest, generate_dataset


def bench_dataset(kind: str = "cfd", n: int = 200, workers: int = 2, size: tuple[int, int] | None = None,
                  frames: int | None = None, seed: int = 0) -> dict:
    """Generate ``n`` items into a temporary folder (removed afterwards) and time it.

    Returns {kind, items, workers, size, frames, seconds, items_per_s, seconds_per_1000, mb_per_item, cpus}.
    """
    tmp = Path(tempfile.mkdtemp(prefix="usgen-bench-dataset-"))
    try:
        req = DatasetRequest(kind, n, tmp / "ds", seed=seed, size=size, frames=frames, workers=workers)
        t0 = time.perf_counter()
        out = generate_dataset(req)
        seconds = time.perf_counter() - t0
        size_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = n / seconds
    return {"kind": kind, "items": n, "workers": workers, "size": list(req.size), "frames": req.frames,
            "seconds": round(seconds, 2), "items_per_s": round(rate, 3),
            "seconds_per_1000": round(1000 / rate, 1), "mb_per_item": round(size_bytes / n / 1e6, 3),
            "cpus": os.cpu_count()}


def format_bench_dataset(r: dict) -> str:
    h, w = r["size"]
    return (f"dataset {r['kind']}: {r['items']} clips of {r['frames']} frames at {h}x{w}, {r['workers']} worker(s) "
            f"({r['cpus']} CPUs): {r['seconds']:.1f} s = {r['items_per_s']:.2f} clips/s; "
            f"1,000 clips in {r['seconds_per_1000'] / 60:.1f} min; {r['mb_per_item']:.2f} MB per clip")
