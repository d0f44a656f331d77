"""Make and write one data-set item per kind into a folder; return its manifest row.

Called by generate.make_item inside worker processes; the folder is a temporary one that the caller
renames into place. Rows hold the per-kind manifest columns (see layouts/manifest.py); keys that
start with an underscore are for the layout writers (e.g. EchoNet tracings) and not the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from USGenLib.datasets.cfd_scene import COVERAGE_STRATA, make_cfd_clip
from USGenLib.datasets.item_files import write_item_json
from USGenLib.io import write_cine


def write_cfd_item(job: dict, rng: np.random.Generator, folder: Path) -> dict:
    """cfd.seq.nrrd (RGB), bmode.seq.nrrd (grey ground truth), mask.seq.nrrd (0/1) + item.json."""
    lo, hi = COVERAGE_STRATA[job["stratum"]]
    target = float(rng.uniform(lo, hi))
    clip = make_cfd_clip(rng, tuple(job["size"]), job["frames"], target_coverage=target)
    write_cine(clip.cfd, folder / "cfd.seq.nrrd")
    write_cine(clip.bmode, folder / "bmode.seq.nrrd")
    write_cine(clip.mask, folder / "mask.seq.nrrd", labels=True)
    write_item_json(folder / "item.json", clip.info)
    t, h, w = clip.mask.frames.shape
    return {"frames": t, "height": h, "width": w, "fps": clip.cfd.fps or 0.0, "coverage": clip.coverage,
            "target_coverage": target, "scene": clip.info["scene"], "mode": clip.info["settings"]["mode"],
            "dual": int(clip.info["dual"])}


def write_echo_item(job: dict, rng: np.random.Generator, folder: Path) -> dict:
    """cine.seq.nrrd, lv_mask.seq.nrrd + item.json, and the EchoNet AVI (see echo_phantom.py)."""
    from USGenLib.datasets.echo_phantom import write_echo_item as impl

    return impl(job, rng, folder)


def write_enhance_item(job: dict, rng: np.random.Generator, folder: Path) -> dict:
    """lq/hq/labels/attenuation .seq.nrrd + fov_mask.nrrd + item.json (see enhance_pairs.py)."""
    from USGenLib.datasets.enhance_pairs import write_enhance_item as impl

    return impl(job, rng, folder)
