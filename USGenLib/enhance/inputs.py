"""What the enhancer reads: a low-quality simulation and its maps, as files and as network input.

A simulation is a `usgen simulate` output folder (bmode.seq.nrrd, labels.seq.nrrd,
attenuation.seq.nrrd, fov_mask.nrrd), an item of `usgen dataset enhance` (lq.seq.nrrd and the same
maps), or a low-quality .seq.nrrd with the maps beside it (or named one by one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from USGenLib.enhance.networks import N_TISSUES
from USGenLib.errors import UsgenInputError
from USGenLib.types import Cine

IMAGE_NAMES = ("bmode.seq.nrrd", "lq.seq.nrrd")
MAP_NAMES = {"labels": "labels.seq.nrrd", "attenuation": "attenuation.seq.nrrd", "fov_mask": "fov_mask.nrrd"}


@dataclass
class Simulation:
    """A low-quality simulation: ``image`` Cine (T, H, W) uint8; ``labels`` (T, H, W) uint8 tissue
    labels; ``attenuation`` (T, H, W) float32 in [0, 1]; ``fov`` (H, W) bool. Maps a variant does
    not use may be None."""

    image: Cine
    labels: np.ndarray | None
    attenuation: np.ndarray | None
    fov: np.ndarray
    source: Path


def _image_file(path: Path) -> Path:
    if path.is_dir():
        for name in IMAGE_NAMES:
            if (path / name).is_file():
                return path / name
        raise UsgenInputError(path, f"holds no simulation ({' or '.join(IMAGE_NAMES)}): give a `usgen simulate` "
                                    "output folder or a .seq.nrrd with its maps")
    if not path.is_file():
        raise UsgenInputError(path, "does not exist")
    return path


def read_simulation(path: str | Path, variant: str, labels: str | Path | None = None,
                    attenuation: str | Path | None = None, fov_mask: str | Path | None = None) -> Simulation:
    """Read the image and the maps ``variant`` needs (FoV mask always; labels for S, attenuation for A),
    checking that every map has the image's frames and size."""
    from USGenLib.io import read_cine, read_volume

    image_path = _image_file(Path(path))
    folder = image_path.parent
    given = {"labels": labels, "attenuation": attenuation, "fov_mask": fov_mask}
    needed = ["fov_mask"] + (["labels"] if "S" in variant else []) + (["attenuation"] if "A" in variant else [])
    files = {k: Path(given[k]) if given[k] else folder / MAP_NAMES[k] for k in needed}
    missing = [k for k in needed if not files[k].is_file()]
    if missing:
        raise UsgenInputError(files[missing[0]], f"missing: variant {variant} needs the {', '.join(missing)} "
                                                 f"map{'s' if len(missing) > 1 else ''} beside the simulation "
                                                 f"(or --{missing[0].replace('_', '-')} FILE)")
    image = read_cine(image_path)
    if image.is_rgb:
        raise UsgenInputError(image_path, "is RGB; the enhancer takes a grey B-mode simulation")
    T, H, W = image.num_frames, image.height, image.width
    maps: dict[str, np.ndarray | None] = {"labels": None, "attenuation": None}
    for key in ("labels", "attenuation"):
        if key in files:
            arr = np.asarray(read_cine(files[key]).frames)
            if arr.shape != (T, H, W):
                raise UsgenInputError(files[key], f"is {'x'.join(map(str, arr.shape))} (frames x H x W) but the "
                                                  f"simulation {image_path.name} is {T}x{H}x{W}")
            maps[key] = arr
    fov = np.asarray(read_volume(files["fov_mask"], kind="labels").array)
    if fov.shape[-2:] != (H, W) or fov.size != H * W:
        raise UsgenInputError(files["fov_mask"], f"is {'x'.join(map(str, fov.shape))} but the simulation "
                                                 f"{image_path.name} has {H}x{W} frames")
    lab = maps["labels"]
    if lab is not None and (lab.min() < 0 or lab.max() >= N_TISSUES):
        raise UsgenInputError(files["labels"], f"holds label {int(lab.max())}, outside the tissue table "
                                               f"(0..{N_TISSUES - 1})")
    att = maps["attenuation"]
    return Simulation(image, None if lab is None else lab.astype(np.uint8),
                      None if att is None else np.clip(att.astype(np.float32), 0, 1), fov.reshape(H, W) > 0,
                      image_path)


def network_input(image: torch.Tensor, fov: torch.Tensor, variant: str, labels: torch.Tensor | None = None,
                  attenuation: torch.Tensor | None = None) -> torch.Tensor:
    """Generator input (B, C, H, W) in [-1, 1] from ``image`` (B, 1, H, W) in [0, 1], ``fov`` (B, 1, H, W),
    ``labels`` (B, H, W) integer, ``attenuation`` (B, 1, H, W) in [0, 1] (pix2pix's input range)."""
    parts = [image * 2 - 1, fov * 2 - 1]
    if "S" in variant:
        onehot = F.one_hot(labels.long().clamp(0, N_TISSUES - 1), N_TISSUES).permute(0, 3, 1, 2)
        parts.append(onehot.to(image.dtype) * 2 - 1)
    if "A" in variant:
        parts.append(attenuation * 2 - 1)
    return torch.cat(parts, 1)


def enhance_frames(model: nn.Module, batch: dict[str, torch.Tensor], variant: str) -> torch.Tensor:
    """The generator's estimate (B, 1, H, W) in [0, 1], black outside the FoV, from a batch of
    ``lq``, ``fov``, ``labels``, ``attenuation`` (sides multiples of the generator's stride)."""
    x = network_input(batch["lq"], batch["fov"], variant, batch.get("labels"), batch.get("attenuation"))
    return (model(x) + 1) / 2 * batch["fov"]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad (B, C, H, W) at the bottom and right to multiples of ``multiple`` (the generator's
    stride); returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), (h, w)
