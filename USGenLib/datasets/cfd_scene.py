"""Cheap vascular and cardiac scenes for the CFD data set: speckle B-mode + vessels/chambers + pulsatile flow.

The CFD data set needs thousands of clips quickly (1,000 clips of 16 frames at 256x256 in minutes on
two cores), so its B-mode background is a fast speckle model rather than the ray-marching
simulator: a tissue echogenicity map (smooth texture, organ blobs, fascia, dark blood with bright
walls) multiplied by correlated Rayleigh speckle that decorrelates slowly over time, attenuated
with depth, log-compressed and scan-converted into a linear, convex or phased-array field of view.

Blood lives in ``FlowComponent`` objects: a backscatter map, a unit flow-direction field (in the
image plane) and a pulsatile speed waveform; a component's axial velocity is its speed times the
projection of its direction on the Doppler beam. ``make_cfd_clip`` places a colour box so that the
CFD mask covers about a requested fraction of the frame (coverage-quartile balancing), draws
random scanner settings and renders with ``render_color_flow``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from USGenLib.datasets.color_flow import (ColorFlowClip, ColorFlowSettings, FlowField, bar_labels, bar_lut,
                                          render_color_flow)
from USGenLib.datasets.geometry import BeamGrid, ColorBox
from USGenLib.datasets.overlays import color_bar_overlay, shared_overlay
from USGenLib.types import Cine

SCENES = ("vascular", "abdominal", "cardiac")
# Target-coverage strata (fraction of frame pixels in the CFD mask), one per quartile.
COVERAGE_STRATA = ((0.03, 0.07), (0.07, 0.12), (0.12, 0.19), (0.19, 0.30))


@dataclass
class FlowComponent:
    """One blood pool or jet.

    blood:      (H, W) float32 in [0, 1], backscatter (1 in the lumen, soft at the edge).
    profile:    (H, W) float32 in [0, 1], speed relative to the peak (parabolic across a vessel).
    tx, ty:     (H, W) float32, unit flow direction in image axes (x right, y down), in-plane part.
    waveform:   (T,) float32 peak speed in mm/s over time (signed: negative reverses the flow).
    turbulence: float in [0, 1], velocity spread of this component (jets), scaled by |waveform|.
    """

    blood: np.ndarray
    profile: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    waveform: np.ndarray
    turbulence: float = 0.0


@dataclass
class Scene:
    """A B-mode image geometry with tissue and blood, before any colour."""

    kind: str
    grid: BeamGrid
    echo: np.ndarray                      # (H, W) float32 tissue echogenicity (blood ~0.02)
    flows: list[FlowComponent] = field(default_factory=list)
    heart_rate: float = 70.0
    fps: float = 20.0

    def blood(self) -> np.ndarray:
        """(H, W) bool: blood pixels inside the field of view."""
        b = np.zeros(self.grid.shape, bool)
        for c in self.flows:
            b |= c.blood > 0.5
        return b & self.grid.fov


# ---------------------------------------------------------------- waveforms (mm/s)

def _phase(times: np.ndarray, heart_rate: float, phase0: float) -> np.ndarray:
    return np.mod(times * heart_rate / 60.0 + phase0, 1.0)


def arterial_waveform(times, heart_rate, peak, phase0, rng) -> np.ndarray:
    """Systolic peak, dicrotic notch, diastolic run-off (optionally brief reversal: triphasic)."""
    ph = _phase(times, heart_rate, phase0)
    diastolic = rng.uniform(0.1, 0.35)
    w = diastolic + (1 - diastolic) * np.exp(-((ph - 0.12) / 0.07) ** 2)
    w -= rng.uniform(0.0, 0.2) * np.exp(-((ph - 0.32) / 0.04) ** 2)
    if rng.random() < 0.3:
        w -= (diastolic + 0.3) * np.exp(-((ph - 0.25) / 0.04) ** 2)
    return (peak * w).astype(np.float32)


def venous_waveform(times, heart_rate, peak, phase0, rng) -> np.ndarray:
    ph = _phase(times, heart_rate, phase0)
    w = 0.75 + 0.25 * np.sin(2 * np.pi * ph) + 0.1 * np.sin(2 * np.pi * times * 0.25 + rng.uniform(0, 6.3))
    return (peak * w).astype(np.float32)


def inflow_waveform(times, heart_rate, peak, phase0, rng) -> np.ndarray:
    """Atrioventricular inflow: E wave (early diastole) and A wave (atrial kick)."""
    ph = _phase(times, heart_rate, phase0)
    e = np.exp(-((ph - 0.5) / 0.07) ** 2)
    a = rng.uniform(0.4, 0.9) * np.exp(-((ph - 0.88) / 0.05) ** 2)
    return (peak * (e + a)).astype(np.float32)


def outflow_waveform(times, heart_rate, peak, phase0, rng) -> np.ndarray:
    """Systolic ejection (the sign is set by the caller)."""
    ph = _phase(times, heart_rate, phase0)
    return (peak * np.exp(-((ph - 0.17) / 0.09) ** 2)).astype(np.float32)


# ---------------------------------------------------------------- geometry helpers (pixel units)

def _tube(shape, x0, y0, angle, radius, bend, wavelength, phase, power_law):
    """A curved tube through (x0, y0) at ``angle`` (radians from +x). Returns (lumen, profile, tx, ty, dist)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    s = (xx - x0) * ca + (yy - y0) * sa
    k = 2 * np.pi / wavelength
    d = (-(xx - x0) * sa + (yy - y0) * ca) - bend * np.sin(k * s + phase)
    slope = np.arctan(bend * k * np.cos(k * s + phase))
    tx = np.cos(angle + slope).astype(np.float32)
    ty = np.sin(angle + slope).astype(np.float32)
    dist = np.abs(d) * np.cos(slope)
    rel = dist / radius
    lumen = np.clip((1.0 - rel) * 4 + 0.5, 0, 1).astype(np.float32)
    profile = np.clip(1 - rel ** power_law, 0, 1).astype(np.float32)
    return lumen, profile, tx, ty, dist


def _ellipse(shape, cx, cy, a, b, angle):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * ca + (yy - cy) * sa) / a
    v = (-(xx - cx) * sa + (yy - cy) * ca) / b
    return np.sqrt(u * u + v * v), u, v


def _smooth_field(shape, rng, scale, sigma=1.0) -> np.ndarray:
    """Smooth random field in [-1, 1]-ish: low-resolution noise, zoomed (texture, gain variation)."""
    h, w = shape
    small = rng.standard_normal((max(h // scale, 2) + 2, max(w // scale, 2) + 2)).astype(np.float32)
    small = ndimage.gaussian_filter(small, sigma)
    small /= max(float(np.abs(small).max()), 1e-6)
    big = ndimage.zoom(small, (h / (small.shape[0] - 2), w / (small.shape[1] - 2)), order=1)
    oy = (big.shape[0] - h) // 2
    ox = (big.shape[1] - w) // 2
    return big[oy:oy + h, ox:ox + w]


# ---------------------------------------------------------------- scenes

def _tissue(shape, grid: BeamGrid, rng) -> np.ndarray:
    echo = 0.55 + 0.25 * _smooth_field(shape, rng, 16, 1.0) + 0.1 * _smooth_field(shape, rng, 4, 0.7)
    for _ in range(int(rng.integers(0, 4))):  # organ-like regions of different echogenicity
        cx, cy = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        r, _, _ = _ellipse(shape, cx, cy, rng.uniform(0.1, 0.4) * shape[1], rng.uniform(0.1, 0.3) * shape[0],
                           rng.uniform(0, np.pi))
        level = rng.uniform(0.3, 1.3)
        echo = np.where(r < 1, echo * level, echo)
        echo = np.where(np.abs(r - 1) < 0.04, echo + 0.6, echo)  # bright capsule
    return np.clip(echo, 0.05, 2.0).astype(np.float32)


def _vessel_flows(scene: Scene, times, rng, blood_needed: float, max_vessels: int) -> None:
    """Add tubes (and cross-sections) until the blood area fraction of the FoV reaches ``blood_needed``."""
    grid = scene.grid
    h, w = grid.shape
    fov_area = max(int(grid.fov.sum()), 1)
    depth_px = grid.max_depth / grid.spacing
    scale = np.sqrt(max(blood_needed, 0.02) / 0.12)
    for i in range(max_vessels):
        if i and (scene.blood().sum() / fov_area) >= blood_needed:
            break
        ys, xs = np.nonzero(grid.fov)
        j = int(rng.integers(0, ys.size))
        x0, y0 = float(xs[j]), float(ys[j])
        radius = float(np.clip(rng.uniform(0.03, 0.09) * depth_px * scale, 2.0, 0.3 * depth_px))
        arterial = rng.random() < 0.6
        peak = rng.uniform(300, 1000) if arterial else rng.uniform(80, 300)
        direction = rng.choice([-1.0, 1.0])
        ph0 = rng.uniform(0, 1)
        wave = (arterial_waveform if arterial else venous_waveform)(times, scene.heart_rate, peak, ph0, rng)
        if rng.random() < 0.25:  # a vessel cut across: in-plane flow is the oblique part only
            r, _, _ = _ellipse((h, w), x0, y0, radius, radius * rng.uniform(0.75, 1.25), rng.uniform(0, np.pi))
            lumen = np.clip((1 - r) * 4 + 0.5, 0, 1).astype(np.float32)
            profile = np.clip(1 - r ** 2, 0, 1).astype(np.float32)
            g = rng.uniform(0, 2 * np.pi)
            tilt = np.sin(np.deg2rad(rng.uniform(15, 50)))
            tx = np.full((h, w), np.cos(g) * tilt, np.float32)
            ty = np.full((h, w), np.sin(g) * tilt, np.float32)
            wall = np.abs(r - 1.08) < 0.1
        else:
            angle = rng.uniform(-0.5, 0.5) + (0 if grid.kind == "linear" else rng.uniform(-0.6, 0.6))
            lumen, profile, tx, ty, dist = _tube((h, w), x0, y0, angle, radius, rng.uniform(0, 0.5) * radius,
                                                 rng.uniform(2, 6) * depth_px, rng.uniform(0, 6.3),
                                                 rng.uniform(2, 6))
            wall = (dist > radius) & (dist < radius + max(1.0, 0.15 * radius))
        scene.echo = np.where(lumen > 0.5, 0.02, scene.echo)
        scene.echo = np.where(wall & (lumen < 0.5), scene.echo + rng.uniform(0.5, 1.2), scene.echo)
        scene.flows.append(FlowComponent(lumen, profile, direction * tx, direction * ty, wave,
                                         turbulence=0.0))


def _cardiac_flows(scene: Scene, times, rng, blood_needed: float) -> None:
    """Four chambers in an apical-four-chamber-like layout, with inflow, outflow and an optional jet."""
    grid = scene.grid
    h, w = grid.shape
    scale = float(np.clip(np.sqrt(max(blood_needed, 0.05) / 0.3), 0.45, 1.1))
    ax, ay = grid.apex
    px = grid.max_depth / grid.spacing
    tilt = rng.uniform(-0.25, 0.25)
    myo = np.zeros((h, w), bool)
    chambers = []
    # (lateral offset, depth fraction, length, width) relative to the sector depth, LV first.
    layout = [(-0.14, 0.42, 0.24, 0.11), (0.14, 0.44, 0.21, 0.09), (-0.13, 0.82, 0.12, 0.11), (0.14, 0.82, 0.12, 0.10)]
    for k, (lat, dep, ln, wd) in enumerate(layout):
        ang = tilt + lat / max(dep, 0.1)
        cx = ax + np.sin(ang) * dep * px + rng.normal(0, 0.01) * px
        cy = ay + np.cos(ang) * dep * px + rng.normal(0, 0.01) * px
        a = ln * px * scale * rng.uniform(0.85, 1.15)
        b = wd * px * scale * rng.uniform(0.85, 1.15)
        axis_angle = np.pi / 2 - ang  # long axis points along the beam through the chamber
        r, u, v = _ellipse((h, w), cx, cy, a, b, axis_angle)
        lumen = np.clip((1 - r) * 4 + 0.5, 0, 1).astype(np.float32)
        myo |= (r >= 1) & (r < 1 + (0.35 if k < 2 else 0.15) * rng.uniform(0.7, 1.3))
        chambers.append((lumen, r, u, v, axis_angle))
    blood = np.zeros((h, w), bool)
    for lumen, *_ in chambers:
        blood |= lumen > 0.5
    scene.echo = np.where(myo & ~blood, scene.echo * 0.6 + rng.uniform(0.5, 0.9), scene.echo)
    scene.echo = np.where(blood, 0.02, scene.echo)
    ph0 = rng.uniform(0, 1)
    for k, (lumen, r, u, v, axis_angle) in enumerate(chambers):
        # Direction toward the apex (up the long axis, toward the probe) for ventricles' inflow;
        # atria fill from the far side and empty toward the valve (also toward the probe).
        tx = np.full((h, w), -np.cos(axis_angle), np.float32)
        ty = np.full((h, w), -np.sin(axis_angle), np.float32)
        core = np.exp(-(v / 0.55) ** 2).astype(np.float32) * np.clip(1 - r ** 2, 0, 1)
        peak_in = rng.uniform(400, 1000) if k < 2 else rng.uniform(200, 500)
        scene.flows.append(FlowComponent(lumen, core, tx, ty,
                                         inflow_waveform(times, scene.heart_rate, peak_in, ph0, rng)))
        peak_out = rng.uniform(150, 500)
        scene.flows.append(FlowComponent(np.zeros_like(lumen), np.clip(1 - r ** 2, 0, 1).astype(np.float32),
                                         -tx, -ty, outflow_waveform(times, scene.heart_rate, peak_out, ph0, rng)))
    if rng.random() < 0.35 and len(chambers) >= 3:  # a regurgitant jet into the left atrium: fast, turbulent
        lumen, r, u, v, axis_angle = chambers[2]
        jet = (np.exp(-(v / 0.25) ** 2) * np.clip(1 - r ** 2, 0, 1)).astype(np.float32)
        tx = np.full((h, w), np.cos(axis_angle), np.float32)
        ty = np.full((h, w), np.sin(axis_angle), np.float32)
        scene.flows.append(FlowComponent(np.zeros_like(lumen), jet, tx, ty,
                                         outflow_waveform(times, scene.heart_rate, rng.uniform(1500, 4000), ph0, rng),
                                         turbulence=rng.uniform(0.3, 0.8)))


def make_scene(kind: str, shape: tuple[int, int], times: np.ndarray, rng: np.random.Generator,
               blood_needed: float = 0.15) -> Scene:
    """A scene of ``kind`` ("vascular" linear, "abdominal" convex, "cardiac" phased) in an (H, W) image."""
    h, w = shape
    top = max(int(0.09 * h), 6)
    if kind == "vascular":
        depth = rng.uniform(25, 50)
        spacing = depth / (h - top)
        grid = BeamGrid.linear(shape, depth, min(rng.uniform(35, 50), (w - 2 * max(w // 7, 12)) * spacing), top=top)
        heart_rate = rng.uniform(50, 100)
    elif kind == "abdominal":
        grid = BeamGrid.sector(shape, rng.uniform(100, 200), rng.uniform(55, 75), rng.uniform(40, 60), top=top)
        heart_rate = rng.uniform(50, 100)
    elif kind == "cardiac":
        grid = BeamGrid.sector(shape, rng.uniform(120, 180), rng.uniform(60, 90), 0.0, top=top)
        heart_rate = rng.uniform(55, 110)
    else:
        raise ValueError(f"unknown scene kind {kind!r} (one of {SCENES})")
    scene = Scene(kind, grid, _tissue(shape, grid, rng), heart_rate=heart_rate)
    if kind == "vascular":
        # Near-field layers: skin and fascia lines.
        for _ in range(int(rng.integers(1, 4))):
            d = rng.uniform(1, 0.35 * grid.max_depth)
            scene.echo = np.where(np.abs(grid.depth - d) < grid.spacing * rng.uniform(0.6, 1.5),
                                  scene.echo + rng.uniform(0.4, 1.0), scene.echo)
        _vessel_flows(scene, times, rng, blood_needed, max_vessels=4)
    elif kind == "abdominal":
        _vessel_flows(scene, times, rng, blood_needed, max_vessels=7)
    else:
        _cardiac_flows(scene, times, rng, blood_needed)
    return scene


def speckle_bmode(scene: Scene, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W) uint8 B-mode: correlated Rayleigh speckle x echogenicity, attenuation, log compression."""
    grid = scene.grid
    h, w = grid.shape
    if grid.kind == "linear":
        sig = (0.6, 1.3)
    else:
        sig = (0.7, 1.6)
    fields = [ndimage.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), sig) for _ in range(4)]
    n0 = fields[0] + 1j * fields[1]
    n1 = fields[2] + 1j * fields[3]
    norm = np.float32(1.0 / np.sqrt(np.mean(np.abs(n0) ** 2)))
    phi = rng.uniform(0, 0.5) + np.arange(num_frames, dtype=np.float32) * rng.uniform(0.02, 0.15)
    c = np.cos(phi).astype(np.float32)[:, None, None]
    s = np.sin(phi).astype(np.float32)[:, None, None]
    amp = np.abs(c * n0[None] + s * n1[None]) * norm                      # (T, H, W) Rayleigh
    depth = np.clip(grid.depth, 0, None)
    atten = np.exp(-rng.uniform(0.0, 0.6) * depth / grid.max_depth)        # residual after TGC
    gain_lat = 1 + 0.15 * _smooth_field((h, w), rng, 32)
    env = amp * (scene.echo * atten * gain_lat)[None]
    dyn = rng.uniform(45, 65)
    gain_db = rng.uniform(-6, 6)
    # Tissue of echogenicity 0.55 maps to grey ~120; blood (0.02) ~29 dB lower, near black.
    db = 20 * np.log10(np.maximum(env, 1e-5)) + 0.47 * dyn + 5.2 + gain_db
    grey = np.clip(db / dyn * 255, 0, 255)
    grey *= grid.fov[None]
    noise = rng.uniform(0, 6) * rng.random(grey.shape, dtype=np.float32)
    return np.clip(grey + noise * grid.fov[None], 0, 255).astype(np.uint8)


def flow_field(scene: Scene, box: ColorBox, factor: int) -> FlowField:
    """The scene's flow at 1/``factor`` resolution as seen along the box's Doppler beams."""
    ux, uy = box.beam_direction(scene.grid)
    sl = (slice(None, None, factor), slice(None, None, factor))
    ux, uy = ux[sl], uy[sl]
    t = len(scene.flows[0].waveform) if scene.flows else 1
    h, w = ux.shape
    vel = np.zeros((t, h, w), np.float32)
    power = np.zeros((h, w), np.float32)
    turb = np.zeros((t, h, w), np.float32)
    for c in scene.flows:
        axial = -(c.tx[sl] * ux + c.ty[sl] * uy) * c.profile[sl]
        vel += c.waveform[:, None, None] * axial[None]
        power = np.maximum(power, c.blood[sl])
        if c.turbulence:
            peak = max(float(np.abs(c.waveform).max()), 1e-6)
            turb += (c.turbulence * np.abs(c.waveform) / peak)[:, None, None] * (c.profile[sl] > 0.2)[None]
    blood_power = np.repeat(power[None], t, axis=0) * np.float32(0.9)
    return FlowField(vel, blood_power, np.clip(turb, 0, 1))


def choose_box(grid: BeamGrid, weight: np.ndarray, need_px: float, rng: np.random.Generator,
               steer: float = 0.0) -> ColorBox:
    """A colour box centred on some flow whose summed ``weight`` (H, W) (expected colour) is about ``need_px``."""
    ys, xs = np.nonzero(weight > 0.3)
    if ys.size:
        j = int(rng.integers(0, ys.size))
        dc, lc = float(grid.depth[ys[j], xs[j]]), float(grid.lateral[ys[j], xs[j]])
        if grid.kind == "linear" and steer:
            lc -= dc * np.tan(steer)
    else:
        dc, lc = grid.max_depth / 2, 0.0
    aspect_d = rng.uniform(0.6, 1.4)
    aspect_l = rng.uniform(0.6, 1.4)
    best = None
    for s in np.geomspace(0.08, 2.0, 28):
        hd = s * 0.5 * grid.max_depth * aspect_d
        hl = s * grid.half_width * aspect_l
        box = ColorBox(max(dc - hd, 0.0), min(dc + hd, grid.max_depth),
                       max(lc - hl, -grid.half_width * 1.5), min(lc + hl, grid.half_width * 1.5), steer)
        area = float(weight[box.mask(grid)].sum())
        best = box
        if area >= need_px:
            break
    return best


def random_settings(rng: np.random.Generator, peak_axial: float, num_frames: int, dual: bool) -> ColorFlowSettings:
    """Scanner colour settings drawn to cover the artefacts the CFD remover must learn."""
    mode = "power" if rng.random() < 0.2 else "velocity"
    nyquist = max(peak_axial, 50.0) / rng.uniform(0.5, 1.7)
    flashes = ()
    if rng.random() < 0.25:
        flashes = tuple(int(f) for f in rng.choice(num_frames, size=min(int(rng.integers(1, 3)), num_frames),
                                                   replace=False))
    return ColorFlowSettings(
        mode=mode, nyquist=float(nyquist),
        baseline=float(rng.uniform(-0.3, 0.3)) if rng.random() < 0.25 else 0.0,
        invert=bool(rng.random() < 0.1), variance=bool(mode == "velocity" and rng.random() < 0.25),
        wall_filter=float(rng.uniform(0.02, 0.08) * nyquist), threshold=float(rng.uniform(0.15, 0.35)),
        priority=int(rng.integers(90, 231)), persistence=float(rng.uniform(0.0, 0.7)),
        noise=float(rng.uniform(0.02, 0.1)), velocity_noise=float(rng.uniform(0.02, 0.06)),
        flash_frames=flashes, flash_strength=float(rng.uniform(0.4, 1.0)),
        smoothing=float(rng.uniform(0.3, 1.0)),
        outline_level=0 if rng.random() < 0.1 else int(rng.integers(120, 256)), dual=dual)


def _duty(flow: FlowField, settings: ColorFlowSettings) -> np.ndarray:
    """(h, w) float32: fraction of frames in which each colour pixel's blood signal passes the threshold."""
    passed = 1.0 - np.exp(-(flow.velocity / max(settings.wall_filter, 1e-3)) ** 2)
    return ((flow.power * passed) > settings.threshold).mean(axis=0).astype(np.float32)


def make_cfd_clip(rng: np.random.Generator, size: tuple[int, int] = (256, 256), frames: int = 16,
                  target_coverage: float = 0.1, scene_kind: str | None = None) -> ColorFlowClip:
    """One CFD training example whose mask covers about ``target_coverage`` of the frame.

    Returns a ColorFlowClip with cfd (T,H,W,3), bmode (T,H,W) and mask (T,H,W) cines; ``info``
    records the scene, the target and the settings. The colour box is sized from the expected
    colour area (blood x fraction of frames whose flow passes the wall filter and threshold).
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32 or frames < 1:
        raise ValueError(f"a CFD clip needs at least 32x32 pixels and 1 frame, got {h}x{w}x{frames}")
    kind = scene_kind or str(rng.choice(SCENES))
    dual = bool(target_coverage <= 0.15 and w >= 96 and w % 2 == 0 and rng.random() < 0.2)
    wi = w // 2 if dual else w
    factor = 2 if (h % 2 == 0 and wi % 2 == 0 and min(h, wi) >= 64) else 1
    fps = float(rng.uniform(10, 30))
    times = np.arange(frames, dtype=np.float64) / fps
    # Colour pixels needed (the colour bar, settings text and box outline add ~2-3 % of the frame).
    need_color = max(target_coverage - 0.025, 0.005) * h * w
    blood_needed = float(np.clip(need_color / (0.6 * 0.6 * h * wi) * rng.uniform(1.3, 1.8), 0.03, 0.7))
    for attempt in range(3):
        scene = make_scene(kind, (h, wi), times, rng, blood_needed)
        steer = 0.0
        if scene.grid.kind == "linear" and rng.random() < 0.7:
            steer = float(np.deg2rad(rng.choice([-1, 1]) * rng.uniform(12, 25)))
        whole = ColorBox(0.0, scene.grid.max_depth, -scene.grid.half_width, scene.grid.half_width, steer)
        flow = flow_field(scene, whole, factor)
        blood_lo = scene.blood()[::factor, ::factor]
        peak_axial = float(np.abs(flow.velocity[:, blood_lo]).max()) if blood_lo.any() else 300.0
        settings = random_settings(rng, peak_axial, frames, dual)
        duty = _duty(flow, settings)
        weight = np.repeat(np.repeat(duty, factor, 0), factor, 1) * scene.grid.fov
        available = float(weight.sum())
        if available >= need_color * 1.1 or attempt == 2:
            break
        blood_needed = float(np.clip(blood_needed * 1.2 * need_color / max(available, 1.0), 0.03, 0.8))
    scene.fps = fps
    box = choose_box(scene.grid, weight, need_color, rng, steer)
    box_mask = box.mask(scene.grid)
    outline = box.outline(scene.grid)

    bframes = speckle_bmode(scene, frames, rng)
    spacing = scene.grid.spacing
    bmode = Cine(bframes, spacing=(spacing, spacing, 1.0), times=times,
                 meta={"modality": "US", "source": "usgen dataset cfd (synthetic)"})
    x_off = wi if dual else 0
    shared = shared_overlay((h, w), scene.grid, rng, text=rng.random() < 0.9, fiducials=rng.random() < 0.8,
                            x_offset=x_off, dual=dual,
                            probe_name={"vascular": "L12-4", "abdominal": "C5-1", "cardiac": "S5-1"}[kind])
    cfd_only = None
    if rng.random() < 0.9:
        bh = int(h * rng.uniform(0.25, 0.4))
        bw = max(3, w // 40)
        bx = w - bw - max(w // 12, 10) if rng.random() < 0.7 else x_off + 2
        by = int(h * rng.uniform(0.12, 0.25))
        cfd_only = color_bar_overlay((h, w), bar_lut(settings), bar_labels(settings), x=bx, y=by, width=bw,
                                     height=bh, rng=rng, cf_text=rng.random() < 0.7)
    clip = render_color_flow(bmode, flow, box_mask, settings, rng, outline=outline, shared=shared,
                             cfd_only=cfd_only)
    clip.info.update({"scene": kind, "probe": scene.grid.kind, "target_coverage": float(target_coverage),
                      "heart_rate": float(scene.heart_rate), "fps": fps, "steer_deg": float(np.rad2deg(steer)),
                      "dual": dual})
    return clip
