"""Enhancement pairs: low- and high-quality simulations of the same poses, with labels, the integral
attenuation map and the field-of-view mask (the inputs of the sim-to-real pix2pix paper).

Each item draws a phantom (abdomen or fetal, its own seed), a probe (convex or linear) and a short
sweep (translation, fan tilt, rotation) from the item's random stream, then simulates the same
poses twice with the same scatterer seed: once at low quality (1 ray, 1 layer), once at high
quality (32 rays, 3 layers). Labels, attenuation and the FoV mask come from the high-quality pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from USGenLib.datasets.item_files import write_item_json
from USGenLib.io import write_cine, write_volume
from USGenLib.simulation import Simulator, make_phantom, make_probe, sweep_poses

PHANTOM_SHAPE = (64, 96, 150)  # (K, J, I) voxels over the phantoms' default extent: ~1.9 mm


def make_enhance_pair(rng: np.random.Generator, size: tuple[int, int], frames: int) -> dict:
    """Simulate one pair. Returns {"lq", "hq", "labels", "attenuation"}: Cines (T, H, W) sharing one
    geometry, "fov_mask": Volume (1, H, W), and "info": the drawn parameters."""
    phantom = str(rng.choice(["abdomen", "fetal"]))
    probe_kind = str(rng.choice(["convex", "linear"]))
    phantom_seed = int(rng.integers(0, 2**31 - 1))
    sim_seed = int(rng.integers(0, 2**31 - 1))
    volume = make_phantom(phantom, seed=phantom_seed, shape=PHANTOM_SHAPE)
    if probe_kind == "convex":
        probe = make_probe("convex", depth_mm=float(rng.uniform(100, 160)), frequency_mhz=float(rng.uniform(2.5, 5.0)))
    else:
        probe = make_probe("linear", depth_mm=float(rng.uniform(40, 70)), frequency_mhz=float(rng.uniform(5.0, 10.0)))
    sweep = {"span_mm": float(rng.uniform(0, 20)), "tilt_deg": float(rng.uniform(-15, 15)),
             "rotate_deg": float(rng.uniform(-20, 20))}
    lateral_mm = float(rng.uniform(-20, 20))
    results = {}
    for quality in ("low", "high"):  # the same poses and scatterers for both passes
        sim = Simulator(volume, probe, quality, size=size, seed=sim_seed, device="cpu")
        base = sim.default_pose()
        base[:3, 3] += base[:3, 0] * lateral_mm
        results[quality] = sim.simulate(sweep_poses(base, frames, **sweep), progress_stage=None)
    hq = results["high"]
    info = {"phantom": phantom, "phantom_seed": phantom_seed, "probe": probe.to_dict(), "sweep": sweep,
            "scatterer_seed": sim_seed, "lq_imaging": results["low"].meta["imaging"],
            "hq_imaging": hq.meta["imaging"], "poses": hq.meta["poses"]}
    return {"lq": results["low"].bmode, "hq": hq.bmode, "labels": hq.labels, "attenuation": hq.attenuation,
            "fov_mask": hq.fov_mask, "info": info}


def write_enhance_item(job: dict, rng: np.random.Generator, folder: Path) -> dict:
    """lq/hq/labels/attenuation .seq.nrrd, fov_mask.nrrd and item.json into ``folder``; the manifest row."""
    pair = make_enhance_pair(rng, tuple(job["size"]), job["frames"])
    for name in ("lq", "hq", "labels", "attenuation"):
        write_cine(pair[name], folder / f"{name}.seq.nrrd", labels=name == "labels")
    write_volume(pair["fov_mask"], folder / "fov_mask.nrrd")
    write_item_json(folder / "item.json", pair["info"])
    t, h, w = pair["hq"].frames.shape
    return {"frames": t, "height": h, "width": w, "fps": pair["hq"].fps or 0.0, "phantom": pair["info"]["phantom"],
            "probe": pair["info"]["probe"]["kind"], "quality_pair": "low/high"}
