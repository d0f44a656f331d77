"""The echo data set in memory: one cardiac cycle per clip, from end-diastole, so any video a job
needs (from ED for the video model, from a random phase for the EF regressor) is cut from it.

A `usgen dataset echo` clip holds an integer number of frames per cycle with ED and ES sampled
exactly, so frame f and frame f + P (P frames per cycle) show the same heart: the cycle is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from USGenLib.datasets.layouts.manifest import MANIFEST_NAME, read_manifest
from USGenLib.echo.config import VIEWS
from USGenLib.errors import UsgenInputError
from USGenLib.io import read_cine


@dataclass
class EchoCycles:
    """One split: ``cycles[i]`` (P_i, H, W) uint8 from ED, ``masks[i]`` the LV masks (P_i, H, W) bool,
    ``ef`` (N,) percent, ``views`` (N,) index into VIEWS, ``fps`` (N,), ``pixel_mm`` (N,), ``ids``."""

    cycles: list[torch.Tensor]
    masks: list[torch.Tensor]
    ef: torch.Tensor
    views: torch.Tensor
    fps: np.ndarray
    pixel_mm: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.cycles)

    def clip(self, i: int, frames: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames, H, W) uint8 video and its masks starting ``start`` frames after ED (wrapping cycles)."""
        idx = (start + torch.arange(frames)) % len(self.cycles[i])
        return self.cycles[i][idx], self.masks[i][idx]


def ef_balanced_weights(ef: torch.Tensor, width: float = 10.0) -> np.ndarray:
    """Sampling probabilities that draw every EF band of ``width`` percent equally often (within the
    bands the data holds): the phantom's hearts cluster near 60 %, the clips users ask for do not."""
    bands = np.floor(ef.numpy() / width).astype(int)
    _, inverse, counts = np.unique(bands, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.sum()


def check_data(root: str | Path) -> Path:
    root = Path(root)
    rows = read_manifest(root) if (root / MANIFEST_NAME).is_file() else None
    if not rows or rows[0].get("kind") != "echo":
        raise UsgenInputError(root, f"is not a `usgen dataset echo` folder (no echo {MANIFEST_NAME})")
    return root


@lru_cache(maxsize=4)  # the stages of `train all` and eval share the loaded splits
def load_cycles(root: str, split: str, size: int) -> EchoCycles:
    """The clips of ``split`` (train, val, test) of a `usgen dataset echo` folder at ``size`` pixels."""
    rows = [r for r in read_manifest(check_data(root)) if r["split"] == split]
    if not rows:
        raise UsgenInputError(Path(root) / MANIFEST_NAME, f"lists no clips in split '{split}'")
    cycles, masks, fps, pixel = [], [], [], []
    for r in rows:
        folder = Path(root) / str(r.get("path") or r["id"])
        cine = read_cine(folder / "cine.seq.nrrd")
        t, h, w = cine.frames.shape
        if (h, w) != (size, size):
            raise UsgenInputError(folder / "cine.seq.nrrd", f"frames are {h}x{w}; this config needs {size}x{size} "
                                                            f"(usgen dataset echo --size {size}x{size})")
        period = int(round(float(r["fps"]) * 60.0 / float(r["heart_rate"])))
        if not 2 <= period <= t:
            raise UsgenInputError(folder, f"holds {t} frames, under one cardiac cycle ({period} frames)")
        idx = int(r["ed_frame"]) + np.arange(period)
        idx[idx >= t] -= period                 # the same phase one cycle earlier
        cycles.append(torch.from_numpy(np.ascontiguousarray(cine.frames[idx])))
        masks.append(torch.from_numpy(read_cine(folder / "lv_mask.seq.nrrd").frames[idx] > 0))
        fps.append(float(r["fps"]))
        pixel.append(float(cine.spacing[0]))
    return EchoCycles(cycles, masks, torch.tensor([float(r["ef"]) for r in rows]),
                      torch.tensor([VIEWS.index(r["view"]) for r in rows]), np.array(fps), np.array(pixel),
                      [str(r["id"]) for r in rows])
