"""Shared fixtures: pydicom's bundled ultrasound files and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from USGenLib.cli import main
from USGenLib.io import bundled_dicom
from USGenLib.types import Cine


@pytest.fixture(scope="session")
def dicoms() -> dict[str, Path]:
    names = ["examples_ybr_color.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
             "examples_palette.dcm", "CT_small.dcm"]
    return {n.removesuffix(".dcm").removeprefix("examples_"): bundled_dicom(n) for n in names}


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def torchrun_usgen(*args, processes: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone -m USGenLib ARGS...` in gloo processes on the CPU (one thread each)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", str(processes), "-m", "USGenLib",
                           *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.fixture
def usgen(capsys):
    """Run `usgen ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args) -> CliResult:
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


def make_cine(rgb: bool = False, frames: int = 5, h: int = 24, w: int = 32, dtype=np.uint8,
              uniform_times: bool = False, seed: int = 0) -> Cine:
    """A cine with non-trivial geometry: anisotropic spacing, offset origin, rotated axes."""
    rng = np.random.default_rng(seed)
    shape = (frames, h, w, 3) if rgb else (frames, h, w)
    if np.issubdtype(dtype, np.floating):
        data = rng.random(shape).astype(dtype)
    else:
        data = rng.integers(0, np.iinfo(dtype).max if dtype != np.uint8 else 256, size=shape).astype(dtype)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    times = np.arange(frames) * 0.04 if uniform_times else np.cumsum(np.r_[0.0, rng.uniform(0.02, 0.05, frames - 1)])
    return Cine(frames=data, spacing=(0.3, 0.25, 1.5), origin=(10.5, -20.25, 3.0), direction=direction,
                times=times, meta={"modality": "US"})


def files_in(folder: Path) -> list[str]:
    """Every entry in a folder, hidden temporaries included."""
    return sorted(p.name for p in Path(folder).iterdir())


def tiny_dataset(tmp_path_factory, kind: str, n: int, size: str, frames: int) -> Path:
    """A `usgen dataset KIND` folder of N small items, made once per fixture scope."""
    out = tmp_path_factory.mktemp(f"{kind}_data") / kind
    assert main(["dataset", kind, "--n", str(n), "--out", str(out), "--size", size, "--frames", str(frames),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def cfd_tiny_data(tmp_path_factory) -> Path:
    """A 10-clip `usgen dataset cfd` folder at 64x64, 8 frames."""
    return tiny_dataset(tmp_path_factory, "cfd", 10, "64x64", 8)


@pytest.fixture(scope="session")
def cfd_tiny_weights(cfd_tiny_data, tmp_path_factory) -> Path:
    """Weights of the tiny config trained for 8 steps by `usgen cfd train` (both phases)."""
    run = tmp_path_factory.mktemp("cfd_run") / "run"
    assert main(["cfd", "train", "--data", str(cfd_tiny_data), "--config", "tiny", "--out", str(run),
                 "--steps", "8", "--workers", "0", "--quiet"]) == 0
    return run / "model.safetensors"


@pytest.fixture(scope="session")
def cfd_clip_file(cfd_tiny_data) -> Path:
    return cfd_tiny_data / "cfd_000000" / "cfd.seq.nrrd"


@pytest.fixture(scope="session")
def echo_tiny_data(tmp_path_factory) -> Path:
    """A 16-clip `usgen dataset echo` folder at 32x32, 8 frames (2 validation and 2 test clips)."""
    return tiny_dataset(tmp_path_factory, "echo", 16, "32x32", 8)


@pytest.fixture(scope="session")
def echo_tiny_weights(echo_tiny_data, tmp_path_factory) -> Path:
    """A weights folder of all six echo networks, tiny config, from `usgen echo train all`."""
    run = tmp_path_factory.mktemp("echo_run") / "run"
    assert main(["echo", "train", "all", "--data", str(echo_tiny_data), "--config", "tiny", "--out", str(run),
                 "--device", "cpu", "--validate-every", "4", "--quiet"]) == 0
    return run
