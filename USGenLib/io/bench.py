"""`usgen bench io`: convert a large RGB ultrasound DICOM cine to .seq.nrrd and read it back.

The input (default 300 frames, 640x480, RGB, uncompressed) is generated first and not timed.
Each timed step runs `usgen` in a fresh process, so wall time includes start-up and peak memory
is that process's own maximum resident set size.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from USGenLib.io.dicom import write_dicom_cine
from USGenLib.types import Cine


def synthetic_cine(frames: int = 300, height: int = 480, width: int = 640, seed: int = 0) -> Cine:
    """An RGB cine that compresses like a scanner's: a speckled sector on black with a pulsing
    colour-flow blob, grey text-free background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, r = width / 2, height * 0.95
    angle = np.arctan2(xx - cx, yy + 20)
    dist = np.hypot(xx - cx, yy + 20)
    sector = (np.abs(angle) < 0.6) & (dist < r) & (dist > 40)
    speckle_big = rng.rayleigh(0.5, size=(height + frames, width)).astype(np.float32)
    out = np.zeros((frames, height, width, 3), dtype=np.uint8)
    gain = np.clip(1.2 - yy / height, 0.3, 1.0)
    for t in range(frames):
        grey = np.clip(speckle_big[t:t + height] * 120 * gain, 0, 255) * sector
        frame = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
        blob = ((xx - cx) ** 2 + (yy - height * 0.5) ** 2) < (30 + 10 * np.sin(2 * np.pi * t / 30)) ** 2
        frame[blob] = (230, 90 + (t % 60), 20)
        out[t] = frame
    return Cine(frames=out, spacing=(0.2, 0.2, 1.0), times=np.arange(frames) / 30.0,
                meta={"modality": "US", "description": "bench"})


def _run(args: list[str]) -> tuple[float, float]:
    """Run `usgen` in a child process; return (wall s, that child's peak RSS MB)."""
    # VmHWM is this process's own high-water mark; ru_maxrss would include the parent's at fork.
    code = ("import sys; from USGenLib.cli import main; rc = main(sys.argv[1:]); "
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]; "
            "import resource; kb = hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "print('PEAK', kb, file=sys.stderr); sys.exit(rc)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args, "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"usgen {' '.join(args)} failed: {proc.stderr.strip()}")
    peak_kb = int(proc.stderr.strip().split("PEAK")[-1])
    return wall, peak_kb / 1024.0


def bench_io(frames: int = 300, height: int = 480, width: int = 640) -> dict:
    with tempfile.TemporaryDirectory(prefix="usgen-bench-") as tmp:
        src = Path(tmp) / "cine.dcm"
        write_dicom_cine(synthetic_cine(frames, height, width), src)
        out = Path(tmp) / "cine.seq.nrrd"
        _run(["info", str(src)])  # warm the file cache and imports once
        info_s, _ = _run(["info", str(src)])
        convert_s, convert_rss = _run(["convert", str(src), str(out)])
        read_s, read_rss = _run(["info", str(out)])
        raw_mb = frames * height * width * 3 / 2**20
        return {
            "frames": frames, "height": height, "width": width, "channels": 3,
            "raw_mb": round(raw_mb, 1),
            "dicom_mb": round(src.stat().st_size / 2**20, 1),
            "seq_nrrd_mb": round(out.stat().st_size / 2**20, 1),
            "convert_s": round(convert_s, 3),
            "convert_peak_rss_mb": round(convert_rss, 1),
            "convert_mb_per_s": round(raw_mb / convert_s, 1),
            "info_dicom_s": round(info_s, 3),
            "read_seq_nrrd_s": round(read_s, 3),
            "read_peak_rss_mb": round(read_rss, 1),
        }


def format_bench_io(r: dict) -> str:
    return "\n".join([
        f"input:   {r['frames']} frames {r['width']}x{r['height']} RGB uncompressed DICOM ({r['dicom_mb']} MB; raw {r['raw_mb']} MB)",
        f"convert: {r['convert_s']:.2f} s wall ({r['convert_mb_per_s']:.0f} MB/s), peak RSS {r['convert_peak_rss_mb']:.0f} MB -> .seq.nrrd {r['seq_nrrd_mb']} MB",
        f"info on the DICOM: {r['info_dicom_s']:.2f} s; read .seq.nrrd back (usgen info): {r['read_seq_nrrd_s']:.2f} s, peak RSS {r['read_peak_rss_mb']:.0f} MB",
    ])
