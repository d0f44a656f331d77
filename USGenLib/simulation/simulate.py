"""The simulation front end: volume + probe + poses -> B-mode, labels, attenuation cines and FoV mask.

Output geometry: each frame is an image plane in the volume's LPS space; pixel (i, j) sits at
``image_to_lps @ (i, j, 0, 1)`` with i along the probe's lateral axis and j along depth. A Cine has
one geometry, so the cines carry the first frame's plane; meta.json lists every frame's
``image_to_lps`` (and probe pose) for sweeps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from USGenLib.errors import UsgenInputError
from USGenLib.simulation.image_formation import QUALITIES, FrameRenderer, ImagingSettings, Quality
from USGenLib.simulation.medium import AcousticMedium
from USGenLib.simulation.probe import Probe, make_probe
from USGenLib.simulation.tissues import TISSUES, tissue_table
from USGenLib.types import Cine, Volume

FRAME_INTERVAL_S = 1.0 / 30.0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_quality(quality: Quality | str, rays: int | None = None, layers: int | None = None) -> Quality:
    if isinstance(quality, str):
        if quality not in QUALITIES:
            raise UsgenInputError(None, f"unknown quality '{quality}' (choose {', '.join(QUALITIES)})")
        quality = QUALITIES[quality]
    q = Quality(rays=int(rays) if rays else quality.rays, layers=int(layers) if layers else quality.layers,
                name=quality.name)
    try:
        q.validate()
    except ValueError as err:
        raise UsgenInputError(None, str(err)) from None
    return q


@dataclass
class SimulationResult:
    """Everything one simulation run produces.

    bmode:       Cine (T, H, W) uint8.
    labels:      Cine (T, H, W) uint8, tissue-table labels of the imaging plane (0 outside the FoV).
    attenuation: Cine (T, H, W) float32, remaining intensity fraction / its 98th percentile, in [0, 1].
    fov_mask:    Volume (1, H, W) uint8, 1 inside the field of view.
    meta:        JSON-ready dict (probe, poses, tissue table, timing, ...).
    envelope:    (T, S, L) float32 envelope (samples x scanlines) before log compression, when requested.
    """

    bmode: Cine
    labels: Cine
    attenuation: Cine
    fov_mask: Volume
    meta: dict = field(default_factory=dict)
    envelope: np.ndarray | None = None

    def write(self, out_dir: str | Path, extra: dict[str, Cine] | None = None) -> list[Path]:
        """Write the five output files, and ``extra`` cines by file name (the enhanced cine of
        ``usgen simulate --enhance``), into ``out_dir`` (created if missing) as a whole: into a
        temporary folder renamed into place, so an error or a kill leaves no partial set."""
        from USGenLib.io import atomic_write_text, write_cine, write_volume
        from USGenLib.io.atomic import atomic_folder

        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsgenInputError(out_dir, "exists and is not a folder")
        parent = out_dir.resolve().parent
        if not parent.is_dir():
            raise UsgenInputError(parent, "output folder's parent does not exist")
        names = ["bmode.seq.nrrd", "labels.seq.nrrd", "attenuation.seq.nrrd", "fov_mask.nrrd", "meta.json"]
        with atomic_folder(out_dir) as tmp:
            t0 = time.perf_counter()
            write_cine(self.bmode, tmp / names[0])
            write_cine(self.labels, tmp / names[1], labels=True)
            write_cine(self.attenuation, tmp / names[2])
            write_volume(self.fov_mask, tmp / names[3])
            for name, cine in (extra or {}).items():
                write_cine(cine, tmp / name)
            names[-1:-1] = list(extra or {})
            self.meta.setdefault("timing", {})["write_s"] = round(time.perf_counter() - t0, 3)
            self.meta["outputs"] = names
            atomic_write_text(tmp / "meta.json", json.dumps(self.meta, indent=1))
        return [out_dir / name for name in names]


class Simulator:
    """Simulates ultrasound frames of one volume with one probe at one quality level.

    volume:    Volume, kind "ct" (HU) or "labels" (tissue table).
    probe:     Probe or "convex" / "linear".
    quality:   Quality or "low" / "high" (rays, layers override its numbers).
    size:      (H, W) output pixels.
    n_samples: samples per scanline (default: H).
    seed:      scatterer texture and ray jitter.
    settings:  ImagingSettings (dynamic range, gain, TGC, reflection weight).
    hu_offset: "auto" or a number subtracted from CT values (see ct_properties.py).
    device:    torch device (default: CUDA when present, else CPU).
    """

    def __init__(self, volume: Volume, probe: Probe | str = "convex", quality: Quality | str = "low",
                 size: tuple[int, int] = (256, 256), n_samples: int | None = None, seed: int = 0,
                 settings: ImagingSettings = ImagingSettings(), hu_offset: float | str = "auto",
                 device: str | torch.device | None = None, rays: int | None = None, layers: int | None = None,
                 source: str | None = None):
        t0 = time.perf_counter()
        self.probe = make_probe(probe) if isinstance(probe, str) else probe
        self.quality = resolve_quality(quality, rays, layers)
        h, w = (int(v) for v in size)
        if h < 2 or w < 2:
            raise UsgenInputError(None, f"output size must be at least 2x2 pixels, got {h}x{w}")
        self.size, self.seed = (h, w), int(seed)
        self.n_samples = int(n_samples) if n_samples else h
        if self.n_samples < 2:
            raise UsgenInputError(None, f"samples per scanline must be at least 2, got {self.n_samples}")
        self.device = torch.device(device) if device is not None else default_device()
        self.source = source or volume.meta.get("source")
        self.medium = AcousticMedium(volume, hu_offset=hu_offset, device=self.device, source=self.source)
        from USGenLib.limits import require_memory

        # One frame's ray samples: coordinates, properties and echoes, about 64 bytes each
        # (measured: high quality at 256x256 peaks near that), before any of it is allocated.
        points = self.quality.rays * self.quality.layers * self.probe.n_scanlines * self.n_samples
        require_memory(None, points * 64, f"{self.quality.rays} rays x {self.quality.layers} layers per scanline")
        self.renderer = FrameRenderer(self.medium, self.probe, self.quality, h, w, self.n_samples, self.seed, settings)
        self.setup_s = time.perf_counter() - t0

    # ------------------------------------------------------------------ poses
    def default_pose(self, skin_contact: bool = True) -> np.ndarray:
        """The probe at the centre of the volume's j = 0 face, aiming along +j, imaging the (i, j)
        plane through the middle k slice. With ``skin_contact``, a probe over air (a CT's
        surroundings) slides along its axis onto the first non-air voxel, as a sonographer places it."""
        vol = self.medium.volume
        i_n, _, k_n = vol.shape_ijk
        m = vol.index_to_physical()
        centre = (m @ np.array([(i_n - 1) / 2.0, 0.0, (k_n - 1) / 2.0, 1.0]))[:3]
        x = vol.direction[:, 0] / np.linalg.norm(vol.direction[:, 0])
        y = vol.direction[:, 1] - x * (x @ vol.direction[:, 1])
        y /= np.linalg.norm(y)
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, np.cross(x, y), centre
        if skin_contact:
            pose[:3, 3] += y * self._air_gap(pose)
        return pose

    def _air_gap(self, pose: np.ndarray, threshold_mrayl: float = 0.5) -> float:
        """Depth (mm) of the first voxel on the probe axis whose impedance exceeds ``threshold``."""
        # half a voxel, but never finer than 0.01 mm: a micrometre voxel would ask for millions of steps
        step = max(0.01, min(0.5, self.medium.min_spacing_mm / 2))
        ys = np.arange(0.0, self.probe.depth_mm, step)
        pts = np.stack([np.zeros_like(ys), ys, np.zeros_like(ys), np.ones_like(ys)], -1) @ pose.T
        grid = (pts @ self.medium.lps_to_grid.T)[:, :3]
        g = torch.as_tensor(grid, dtype=torch.float32, device=self.device).view(1, 1, 1, -1, 3)
        z = torch.nn.functional.grid_sample(self.medium.props[:, :1], g, align_corners=True)[0, 0, 0, 0]
        z = z.cpu().numpy() + TISSUES[1].impedance
        inside = self.medium.contains(pts[:, :3])
        hits = np.nonzero((z > threshold_mrayl) & inside)[0]
        return float(ys[hits[0]]) if hits.size and hits[0] > 0 else 0.0

    def check_poses(self, poses: np.ndarray, source=None) -> np.ndarray:
        """Raise UsgenInputError when a pose puts the transducer outside the volume or its field
        of view misses the volume entirely."""
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
        if not np.all(np.isfinite(poses)):
            raise UsgenInputError(source, "pose contains NaN or infinite values")
        conv = self.renderer.converter
        probe_pts = conv.pixel_local[conv.fov][:: max(1, int(conv.fov.sum()) // 2000)]
        probe_pts = np.concatenate([probe_pts, np.ones((len(probe_pts), 1))], 1)
        for n, pose in enumerate(poses):
            face = pose[:3, 3]
            if not self.medium.contains(face[None], margin_voxels=1.0)[0]:
                idx = self.medium.to_index(face[None])[0]
                raise UsgenInputError(source, f"pose {n} puts the transducer outside the volume "
                                              f"(at voxel index {np.round(idx, 1).tolist()}, volume is "
                                              f"{list(self.medium.volume.shape_ijk)} voxels in i, j, k)")
            if not np.any(self.medium.contains((probe_pts @ pose.T)[:, :3])):
                raise UsgenInputError(source, f"pose {n}: the field of view does not meet the volume")
        return poses

    # ------------------------------------------------------------- simulation
    def simulate(self, poses: np.ndarray | None = None, envelope: bool = False, pose_source=None,
                 progress_stage: str | None = "simulate") -> SimulationResult:
        """Simulate one frame per pose ((N, 4, 4) probe-to-LPS; default: ``default_pose()``)."""
        from USGenLib.progress import progress

        poses = self.default_pose()[None] if poses is None else np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
        poses = self.check_poses(poses, pose_source)
        n = poses.shape[0]
        chunk = self.renderer.frames_per_chunk
        parts = []
        t0 = time.perf_counter()
        with progress(n, progress_stage or "simulate") as rep:
            for start in range(0, n, chunk):
                out = self.renderer.render(poses[start:start + chunk], envelope=envelope)
                parts.append({k: v.cpu().numpy() for k, v in out.items()})
                rep.update(min(chunk, n - start))
        sim_s = time.perf_counter() - t0
        frames = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self._package(poses, frames, sim_s)

    def _package(self, poses: np.ndarray, frames: dict, sim_s: float) -> SimulationResult:
        conv = self.renderer.converter
        image_to_probe = conv.image_to_probe()
        image_to_lps = np.stack([p @ image_to_probe for p in poses])
        first = image_to_lps[0]
        spacing = np.array([conv.pixel_mm, conv.pixel_mm, self.probe.slice_thickness_mm])
        direction = first[:3, :3] / spacing
        origin = first[:3, 3]
        times = np.arange(poses.shape[0]) * FRAME_INTERVAL_S
        meta = self.describe(poses, image_to_lps, sim_s)
        geo = dict(spacing=spacing, origin=origin, direction=direction, times=times)
        drawn = {"burned_in_annotation": "NO"}  # simulated pixels hold no text
        bmode = Cine(frames["bmode"], meta={"content": "bmode", "modality": "US", **drawn}, **geo)
        labels = Cine(frames["labels"], meta={"content": "labels", **drawn}, **geo)
        atten = Cine(frames["attenuation"].astype(np.float32), meta={"content": "attenuation", **drawn}, **geo)
        fov = Volume(conv.fov.astype(np.uint8)[None], spacing=spacing, origin=origin, direction=direction,
                     kind="labels", meta={"content": "fov_mask"})
        return SimulationResult(bmode, labels, atten, fov, meta, frames.get("envelope"))

    def describe(self, poses: np.ndarray, image_to_lps: np.ndarray, sim_s: float) -> dict:
        n = poses.shape[0]
        return {
            "generator": "usgen simulate",
            "volume": self.medium.describe(),
            "probe": self.probe.to_dict(),
            "imaging": self.renderer.describe(),
            "seed": self.seed,
            "size_hw": list(self.size),
            "device": str(self.device),
            "frames": n,
            "frame_interval_s": FRAME_INTERVAL_S,
            "pose_space": "LPS",
            "pose_convention": "probe (x lateral, y depth, z elevation; mm; origin at the face centre) to LPS mm",
            "poses": [np.round(p, 6).tolist() for p in poses],
            "image_to_lps": [np.round(m, 6).tolist() for m in image_to_lps],
            "outputs_axis_order": "frames (T, H, W): H rows along depth (probe y), W columns along probe x",
            "label_names": {str(t.label): t.name for t in TISSUES},
            "tissue_table": tissue_table(),
            "attenuation_map": "mean over rays and layers of the one-way intensity fraction reaching each "
                               "pixel, divided by its 98th percentile inside the FoV, clipped to 1",
            "timing": {"setup_s": round(self.setup_s, 3), "simulate_s": round(sim_s, 3),
                       "frames_per_s": round(n / sim_s, 2) if sim_s > 0 else None,
                       "torch_threads": torch.get_num_threads()},
        }


def simulate_volume(volume: Volume, poses: np.ndarray | None = None, **kwargs) -> SimulationResult:
    """One-call form: ``Simulator(volume, **kwargs).simulate(poses)``."""
    return Simulator(volume, **kwargs).simulate(poses)


def demo_sweep(out_dir: str | Path, seed: int = 0, frames: int = 10) -> list[Path]:
    """Write a small simulated sweep (abdomen phantom, low and high quality side by side in
    OUT_DIR/simulation/) and return the written files. Takes a few seconds on a laptop CPU."""
    from USGenLib.simulation.phantoms import make_phantom
    from USGenLib.simulation.sweep import sweep_poses

    out_dir = Path(out_dir) / "simulation"
    out_dir.mkdir(parents=True, exist_ok=True)
    # the enhancement data set's phantom grid and frame size, so the bundled enhancer sees what it learnt on
    volume = make_phantom("abdomen", seed=seed, shape=(64, 96, 150))
    written: list[Path] = []
    for quality in ("low", "high"):
        sim = Simulator(volume, "convex", quality, size=(256, 256), seed=seed)
        poses = sweep_poses(sim.default_pose(), frames, span_mm=40.0)
        written += sim.simulate(poses, progress_stage=f"demo: simulated sweep ({quality})").write(out_dir / quality)
    return written
