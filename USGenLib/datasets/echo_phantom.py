"""Echo data set: the beating-heart phantom (heart.py) imaged by the simulator in A4C, PSAX and PLAX planes.

Each frame, the heart's structures are evaluated on a 2-D label slab lying in the imaging plane
(probe coordinates = the slab's LPS space, identity pose; a one-slice label map extends in
elevation) and the simulation engine (USGenLib.simulation.Simulator, a near-point-apex convex
probe as the sector probe) renders it. The speckle texture is the same for every frame (same seed),
so tissue boundaries move through it. The LV mask is the analytic LV cavity at each pixel centre.

Timing: a clip covers 1.05-1.4 cardiac cycles with an integer number of frames per cycle; the
first frame at ED is ``ed_frame`` and the first at ES ``es_frame``, both sampled exactly, so the
largest and smallest LV of the clip are the phantom's EDV and ESV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from USGenLib.datasets.heart import BeatingHeart, HeartParams, tissue_labels
from USGenLib.datasets.item_files import item_id, write_item_json
from USGenLib.datasets.lv_measure import disc_tracing
from USGenLib.types import Cine, Volume

VIEWS = ("A4C", "PSAX", "PLAX")


def _rot(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    a = np.deg2rad(deg)
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


@dataclass
class ViewGeometry:
    """Probe frame in heart coordinates: p_heart = origin + x * ex + y * ey + z * ez (probe x, y, z mm)."""

    view: str
    origin: np.ndarray
    axes: np.ndarray            # (3, 3) columns ex (lateral), ey (depth), ez (elevation)
    depth_mm: float
    opening_deg: float

    def to_heart(self, pts_probe: np.ndarray) -> np.ndarray:
        return self.origin + pts_probe @ self.axes.T


def view_geometry(view: str, heart: BeatingHeart, rng: np.random.Generator, extra_near: float = 0.0) -> ViewGeometry:
    """A seed-varied A4C, PSAX or PLAX probe frame (orientation, depth, off-axis jitter);
    ``extra_near`` moves the probe further away (used when the LV does not fit the sector)."""
    ed = heart.lv(0.0)
    x, y, z = np.eye(3)
    if view == "A4C":
        # From the apex along the long axis; LV on the screen right (RV, at +x, on the left).
        ex, ey = -x, z
        target = np.array([0.0, 0.0, ed["zc"] - ed["c"] - ed["apex_wall"]])   # the epicardial apex
        near = rng.uniform(25, 45) + extra_near
        depth = float(near + ed["c"] * (1 + heart.p.trunc) + ed["apex_wall"] + rng.uniform(55, 75))
    elif view == "PLAX":
        # From the front, plane through the long axis and the antero-posterior axis; apex on the left.
        ex, ey = z, y
        lv_mid = 0.5 * (ed["zt"] + ed["zc"] - ed["c"] - ed["apex_wall"])
        target = np.array([0.0, -(1.6 * ed["a"] + 12), lv_mid + rng.uniform(0, 10)])  # anterior pericardium
        near = rng.uniform(30, 45) + extra_near
        depth = float(near + 2 * (1.6 * ed["a"] + 12) + rng.uniform(25, 45))
    elif view == "PSAX":
        # From the front, plane across the long axis at the contraction pivot; RV on the screen left.
        ex, ey = -x, y
        target = np.array([0.0, -(1.6 * ed["a"] + 12), heart.p.pivot * heart.p.c])
        near = rng.uniform(15, 30) + extra_near
        depth = float(near + 2 * (1.6 * ed["a"] + 12) + rng.uniform(5, 20))
    else:
        raise ValueError(f"unknown view {view!r} (one of {', '.join(VIEWS)})")
    ez = np.cross(ex, ey)
    axes = np.stack([ex, ey, ez], 1)
    # Variation that keeps the LV's long axis in A4C/PLAX planes (and PSAX perpendicular to it):
    # rotation about the plane normal (in-plane tilt); about the long axis for A4C/PLAX; a small
    # out-of-plane tilt and offset (foreshortening-like).
    inplane = rng.uniform(-12, 12) if view != "PLAX" else rng.uniform(-25, -5)
    r = _rot(axes[:, 2], inplane)
    if view in ("A4C", "PLAX"):
        # Spin about the LV long axis (x = y = 0): the probe's target spins with it, or the
        # plane would slide off the axis (PLAX's target lies in front of it).
        spin = _rot(z, rng.uniform(-15, 15))
        r = spin @ r
        target = spin @ target
    r = _rot(r @ axes[:, 0], rng.uniform(-3, 3)) @ r
    axes = r @ axes
    offset = axes[:, 2] * rng.uniform(-1.5, 1.5) + axes[:, 0] * rng.uniform(-4, 4)
    origin = target - near * axes[:, 1] + offset
    return ViewGeometry(view, origin, axes, depth, float(rng.uniform(70, 85)))


def _lv_inside(heart: BeatingHeart, geo: ViewGeometry, probe, margin_mm: float = 4.0) -> bool:
    """Whether the ED LV cavity's section by the imaging plane lies inside the sector (with a margin)."""
    g = np.arange(-geo.depth_mm * 1.5, geo.depth_mm * 1.5, 1.0)
    gx, gy = np.meshgrid(g, np.arange(-10.0, geo.depth_mm + 60, 1.0))
    pts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    lv = heart.lv_mask(geo.to_heart(pts), 0.0)
    if not lv.any():
        return False
    depth, _, inside = probe.to_beam(pts[lv, 0], pts[lv, 1])
    if not inside.all() or depth.max() > probe.depth_mm - margin_mm:
        return False
    # Keep a margin from the sector's edges too: shrink the opening by the margin at each depth.
    vy = pts[lv, 1] + getattr(probe, "radius_mm", 0.0)
    theta = np.abs(np.arctan2(pts[lv, 0], vy))
    return bool(np.all(theta <= probe.half_angle - margin_mm / np.maximum(np.hypot(pts[lv, 0], vy), 1.0)))


@dataclass
class EchoClip:
    """One echo example.

    cine:     Cine (T, H, W) uint8 B-mode.
    lv_mask:  Cine (T, H, W) uint8 {0, 1}, LV cavity per frame.
    ef:       ejection fraction in percent; edv, esv in ml (analytic, EF = (EDV - ESV) / EDV exactly).
    ed_frame, es_frame: first frame at end-diastole / end-systole.
    view:     "A4C", "PSAX" or "PLAX".  info: heart parameters, view, probe, timing.
    """

    cine: Cine
    lv_mask: Cine
    ef: float
    edv: float
    esv: float
    ed_frame: int
    es_frame: int
    view: str
    info: dict = field(default_factory=dict)


def _timing(rng: np.random.Generator, frames: int, heart: BeatingHeart) -> tuple[np.ndarray, float, int, int]:
    """(phases (T,), fps, ed_frame, es_frame): an integer number of frames per cycle, ED and ES sampled."""
    lo = max(int(np.ceil(frames / 1.4)), 4)
    hi = max(int(np.floor(frames / 1.05)), lo)
    per_cycle = int(rng.integers(lo, hi + 1))
    fps = per_cycle * heart.p.heart_rate / 60.0
    n_es = int(np.clip(round(heart.p.systole * per_cycle), 1, per_cycle - 2))
    heart.p.systole = n_es / per_cycle
    ed_frame = int(rng.integers(0, per_cycle))
    phases = np.mod((np.arange(frames) - ed_frame) / per_cycle, 1.0)
    es_frame = (ed_frame + n_es) % per_cycle
    return phases, float(fps), ed_frame, es_frame


def simulate_echo(rng: np.random.Generator, size: tuple[int, int] = (112, 112), frames: int = 32,
                  view: str = "A4C", ef: float | None = None, quality: str = "low",
                  params: HeartParams | None = None) -> EchoClip:
    """Image a seed-drawn beating heart (EF ``ef`` in percent, or drawn) in ``view``."""
    from USGenLib.simulation import ConvexProbe, ImagingSettings, Simulator

    h, w = int(size[0]), int(size[1])
    params = params or HeartParams.random(rng, None if ef is None else ef / 100.0)
    heart = BeatingHeart(params)
    phases, fps, ed_frame, es_frame = _timing(rng, frames, heart)
    states = heart.state(phases)
    for attempt in range(8):  # the whole LV (at ED, its largest) must lie inside the sector
        geo = view_geometry(view, heart, rng, extra_near=8.0 * attempt)
        probe = ConvexProbe(depth_mm=geo.depth_mm, frequency_mhz=float(rng.uniform(2.0, 3.5)), bandwidth=0.6,
                            n_scanlines=int(np.clip(w, 64, 160)), lateral_aperture_mm=float(rng.uniform(16, 22)),
                            elevation_focus_mm=geo.depth_mm * 0.5, radius_mm=float(rng.uniform(2.0, 5.0)),
                            opening_deg=geo.opening_deg)
        if _lv_inside(heart, geo, probe):
            break
    settings = ImagingSettings(dynamic_range_db=float(rng.uniform(50, 65)), gain_db=float(rng.uniform(-27, -17)))
    # The label slab in probe coordinates (identity pose), a little finer than the output pixels.
    x0, x1, y0, y1 = probe.fov_bounds()
    y0 = min(y0, 0.0) - 2.0
    pixel = max((x1 - x0) / w, (y1 - y0) / h)
    sp = float(np.clip(pixel * 0.6, 0.3, 1.0))
    xs = np.arange(x0 - 2, x1 + 2, sp)
    ys = np.arange(y0, y1 + 2, sp)
    gx, gy = np.meshgrid(xs, ys)
    slab_probe = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    slab_heart = geo.to_heart(slab_probe)
    sim_seed = int(rng.integers(0, 2 ** 31 - 1))
    noise_sigma = float(rng.uniform(0, 6))
    frames_out = np.empty((frames, h, w), np.uint8)
    masks = np.empty((frames, h, w), np.uint8)
    pixels_heart = None
    fov = None
    sim = None
    cache: dict[float, np.ndarray] = {}
    for t in range(frames):
        key = (round(float(states[t]), 9), bool(phases[t] < heart.p.systole))
        if key not in cache:
            st = heart.structures(slab_heart, float(states[t]), phase=float(phases[t]))
            labels = tissue_labels(st).reshape(gx.shape)
            labels[gy < 1.5] = 2     # skin and subcutaneous fat under the probe
            vol = Volume(labels[None], spacing=(sp, sp, 1.0), origin=(xs[0], ys[0], 0.0), kind="labels",
                         meta={"source": "echo phantom"})
            sim = Simulator(vol, probe, quality, size=(h, w), seed=sim_seed, settings=settings, device="cpu")
            res = sim.simulate(np.eye(4)[None], progress_stage=None)
            cache[key] = res.bmode.frames[0]
            if pixels_heart is None:
                conv = sim.renderer.converter
                pixels_heart = geo.to_heart(conv.pixel_local.reshape(-1, 3))
                fov = conv.fov
                spacing = res.bmode.spacing
                origin, direction = res.bmode.origin, res.bmode.direction
        frames_out[t] = cache[key]
        masks[t] = (heart.lv_mask(pixels_heart, float(states[t])).reshape(h, w) & fov).astype(np.uint8)
    # Display: reject (grey below it goes black, as scanners' "reject" control) and noise.
    reject = float(rng.uniform(25, 60))
    shown = np.clip((frames_out.astype(np.float32) - reject) / (255.0 - reject) * 255.0, 0, 255)
    if noise_sigma > 0:
        shown += rng.normal(0, noise_sigma, frames_out.shape).astype(np.float32) * fov[None]
    frames_out = np.clip(shown, 0, 255).astype(np.uint8)
    times = np.arange(frames) / fps
    meta = {"modality": "US", "source": "usgen dataset echo (synthetic)", "view": view}
    cine = Cine(frames_out, spacing=spacing, origin=origin, direction=direction, times=times, meta=meta)
    mask = cine.with_frames(masks)
    mask.meta["content"] = "lv_mask"
    info = {"heart": params.to_dict(), "view": view, "fps": fps, "probe": probe.to_dict(),
            "imaging": {"quality": quality, "dynamic_range_db": settings.dynamic_range_db,
                        "gain_db": settings.gain_db, "noise_sigma": noise_sigma, "reject": reject,
                        "seed": sim_seed},
            "view_axes": geo.axes.tolist(), "view_origin": geo.origin.tolist(), "pixel_mm": float(spacing[0]),
            "phases": phases.tolist(), "states": states.tolist()}
    return EchoClip(cine, mask, 100.0 * heart.ef, heart.edv, heart.esv, ed_frame, es_frame, view, info)


def write_echo_item(job: dict, rng: np.random.Generator, folder: Path) -> dict:
    """cine.seq.nrrd, lv_mask.seq.nrrd, item.json; the AVI into ROOT/echonet/Videos; returns the row
    (with ``_tracings``: VolumeTracings rows for the ES and ED frames)."""
    from USGenLib.io import write_cine

    if os.environ.get("USGEN_WORKER"):
        import torch

        torch.set_num_threads(1)
    clip = simulate_echo(rng, tuple(job["size"]), job["frames"], job["view"],
                         quality=job.get("options", {}).get("quality", "low"))
    write_cine(clip.cine, folder / "cine.seq.nrrd")
    write_cine(clip.lv_mask, folder / "lv_mask.seq.nrrd", labels=True)
    info = dict(clip.info, ef=clip.ef, edv=clip.edv, esv=clip.esv, ed_frame=clip.ed_frame, es_frame=clip.es_frame)
    write_item_json(folder / "item.json", info)
    name = item_id("echo", job["index"])
    videos = Path(job["root"]) / "echonet" / "Videos"
    if videos.is_dir():
        write_cine(clip.cine, videos / f"{name}.avi")
    tracings = []
    for frame in (clip.es_frame, clip.ed_frame):        # EchoNet's loader: small (ES) first, large (ED) last
        tr = disc_tracing(clip.lv_mask.frames[frame].astype(bool))
        if tr is not None:
            tracings += [(name + ".avi", *row, frame) for row in tr.rows()]
    t, h, w = clip.cine.frames.shape
    return {"frames": t, "height": h, "width": w, "fps": clip.cine.fps, "ef": clip.ef, "edv": clip.edv,
            "esv": clip.esv, "view": clip.view, "ed_frame": clip.ed_frame, "es_frame": clip.es_frame,
            "heart_rate": clip.info["heart"]["heart_rate"], "_tracings": tracings, "_filename": name}
