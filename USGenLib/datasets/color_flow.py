"""Colour-flow Doppler (CFD) overlay synthesiser: B-mode cine + blood flow -> CFD cine, as scanners show it.

``render_color_flow`` takes a grey B-mode cine, a colour box and a ``FlowField`` (axial blood
velocity and backscatter power over time) and renders what a scanner's colour mode displays:

- velocity mode: red toward the probe, blue away, brighter with speed, aliasing (wrap-around) at
  the Nyquist velocity around an optional shifted baseline, optional variance (green added);
- power mode: an orange/hot map of Doppler power, direction-free;
- wall filter, Doppler noise, flash artefacts (tissue motion lighting up the box);
- write priority: colour only where the flow power passes a threshold and the B-mode grey is below
  the priority level; persistence (frame averaging of power and velocity);
- colour box outline, colour bar with scale labels, burned-in text and fiducials;
- dual display: B-mode image left and CFD image right in one frame.

The result holds the CFD cine (RGB), the ground-truth B-mode cine (the same screen without colour:
same text and fiducials) and the CFD mask: every pixel where the two differ.

No library offers scanner colour-flow display; this module is hand-written (numpy + scipy.ndimage).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from USGenLib.datasets.overlays import Overlay
from USGenLib.types import Cine


@dataclass
class FlowField:
    """Blood flow seen along the colour-Doppler beams.

    velocity:   (T, h, w) float32, axial velocity in mm/s, positive toward the probe.
    power:      (T, h, w) float32 in [0, 1], blood backscatter strength (0 where there is no blood).
    turbulence: (T, h, w) float32 in [0, 1] or None, velocity spread (shown by the variance map).
    (h, w) may be the image size divided by an integer factor: colour pixels are coarser than
    B-mode pixels on scanners, and the renderer repeats them up to the image size.
    """

    velocity: np.ndarray
    power: np.ndarray
    turbulence: np.ndarray | None = None

    def __post_init__(self):
        if self.velocity.ndim != 3 or self.power.shape != self.velocity.shape:
            raise ValueError(f"velocity {self.velocity.shape} and power {self.power.shape} must be equal (T,h,w)")
        if self.turbulence is not None and self.turbulence.shape != self.velocity.shape:
            raise ValueError("turbulence must have the velocity's shape")


@dataclass
class ColorFlowSettings:
    """Scanner colour-mode settings (velocities in mm/s, grey levels 0-255)."""

    mode: str = "velocity"          # "velocity" or "power"
    nyquist: float = 300.0          # scale: velocity at which the display wraps (aliasing)
    baseline: float = 0.0           # zero-line shift in (-0.5, 0.5): >0 gives more range toward
    invert: bool = False            # swap red and blue
    variance: bool = False          # add green for velocity spread (velocity mode)
    wall_filter: float = 15.0       # mm/s: slower flow is filtered out
    threshold: float = 0.25         # displayed power needed to write colour (0..1)
    priority: int = 150             # colour only where the B-mode grey is below this
    persistence: float = 0.3        # weight of the previous frame in the frame average (0..0.9)
    noise: float = 0.06             # Doppler noise power (0..1)
    velocity_noise: float = 0.08    # velocity estimate noise, fraction of the Nyquist velocity
    flash_frames: tuple[int, ...] = ()   # frames with a tissue-motion flash
    flash_strength: float = 0.6
    smoothing: float = 0.7          # spatial smoothing of the colour estimates (pixels, sigma)
    outline_level: int = 200        # grey of the colour box outline (0: no outline)
    dual: bool = False              # B-mode left, CFD right, in one frame

    def __post_init__(self):
        if self.mode not in ("velocity", "power"):
            raise ValueError(f"mode must be 'velocity' or 'power', got {self.mode!r}")
        if not self.nyquist > 0:
            raise ValueError("nyquist must be positive")
        if not -0.5 < self.baseline < 0.5:
            raise ValueError("baseline must lie in (-0.5, 0.5)")
        if not 0 <= self.persistence < 1:
            raise ValueError("persistence must lie in [0, 1)")
        self.flash_frames = tuple(int(f) for f in self.flash_frames)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ColorFlowClip:
    """One paired example.

    cfd:      Cine (T, H, W, 3) uint8, the screen in colour mode.
    bmode:    Cine (T, H, W) uint8, the same screen without colour (ground truth).
    mask:     Cine (T, H, W) uint8 in {0, 1}: 1 where ``cfd`` differs from ``bmode``.
    coverage: mean fraction of frame pixels in the mask.
    info:     settings and scene parameters (JSON-able).
    """

    cfd: Cine
    bmode: Cine
    mask: Cine
    coverage: float
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- colour maps (256 x 3, uint8)

def _ramp(u: np.ndarray, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    pos = np.array([s[0] for s in stops])
    cols = np.array([s[1] for s in stops], dtype=np.float64)
    return np.stack([np.interp(u, pos, cols[:, c]) for c in range(3)], axis=-1)


def velocity_lut(invert: bool = False) -> np.ndarray:
    """(256, 3) uint8: index 0..127 away from the probe (fastest at 0), 128..255 toward (fastest at 255).

    Toward: dark red -> red -> yellow; away: dark blue -> blue -> cyan (swapped when ``invert``).
    No entry is black or grey, so every written colour pixel differs from a grey B-mode pixel.
    """
    u = np.linspace(0, 1, 128)
    red = _ramp(u, [(0, (90, 0, 0)), (0.6, (255, 20, 0)), (1, (255, 230, 90))])
    blue = _ramp(u, [(0, (0, 0, 100)), (0.6, (20, 40, 255)), (1, (90, 230, 255))])
    toward, away = (blue, red) if invert else (red, blue)
    return np.concatenate([away[::-1], toward]).round().astype(np.uint8)


def variance_lut(levels: int = 8, invert: bool = False) -> np.ndarray:
    """(levels, 256, 3) uint8: the velocity map with green added for increasing variance."""
    base = velocity_lut(invert).astype(np.float64)
    out = np.empty((levels, 256, 3))
    for k in range(levels):
        g = 200.0 * k / max(levels - 1, 1)
        out[k] = base
        out[k, :, 1] = np.maximum(base[:, 1], g)
    return out.round().astype(np.uint8)


def power_lut() -> np.ndarray:
    """(256, 3) uint8 power (hot/orange) map, index = displayed power 0..1."""
    u = np.linspace(0, 1, 256)
    return _ramp(u, [(0, (70, 0, 0)), (0.45, (230, 80, 0)), (0.8, (255, 170, 20)),
                     (1, (255, 240, 140))]).round().astype(np.uint8)


def bar_lut(settings: ColorFlowSettings) -> np.ndarray:
    """Colour-bar rows, top first: toward velocities at the top (as scanners draw it)."""
    if settings.mode == "power":
        return power_lut()[::-1]
    return velocity_lut(settings.invert)[::-1]


def bar_labels(settings: ColorFlowSettings) -> tuple[str, str, str]:
    """(top, bottom, unit) colour-bar labels: the velocity scale in cm/s."""
    if settings.mode == "power":
        return ("PDI", "", "")
    hi = settings.nyquist * (1 + settings.baseline) / 10.0
    lo = settings.nyquist * (1 - settings.baseline) / 10.0
    return (f"+{hi:.1f}", f"-{lo:.1f}", "cm/s")


# ---------------------------------------------------------------- rendering

def _upsample(arr: np.ndarray, fy: int, fx: int) -> np.ndarray:
    if fy == 1 and fx == 1:
        return arr
    return np.repeat(np.repeat(arr, fy, axis=1), fx, axis=2)


def estimate_display(flow: FlowField, settings: ColorFlowSettings, rng: np.random.Generator,
                     box: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What the scanner's estimator shows at the flow field's resolution.

    Returns (power (T,h,w) float32 displayed power, velocity (T,h,w) float32 displayed, wrapped
    velocity in mm/s, variance (T,h,w) float32 in [0,1] or None). ``box`` (h, w) bool limits the
    flash artefact to the colour box.
    """
    s = settings
    v = flow.velocity.astype(np.float32)
    shape = v.shape
    # Wall filter: slow flow (and tissue) is removed.
    passed = 1.0 - np.exp(-(v / max(s.wall_filter, 1e-3)) ** 2)
    signal = flow.power * passed
    noise = np.float32(s.noise) * rng.standard_exponential(shape, dtype=np.float32)
    v_noise = rng.uniform(-s.nyquist, s.nyquist, shape).astype(np.float32)
    v_sig = v + np.float32(s.velocity_noise * s.nyquist) * rng.standard_normal(shape, dtype=np.float32)
    power = signal + noise
    vel = (signal * v_sig + noise * v_noise) / np.maximum(power, 1e-6)
    for t in s.flash_frames:
        if 0 <= t < shape[0]:
            strength = np.float32(s.flash_strength * rng.uniform(0.6, 1.4))
            flash = strength * (0.5 + rng.random(shape[1:], dtype=np.float32))
            if box is not None:
                flash = flash * box
            vf = np.float32(rng.choice([-1, 1]) * rng.uniform(0.1, 0.5) * s.nyquist)
            vel[t] = (power[t] * vel[t] + flash * vf) / np.maximum(power[t] + flash, 1e-6)
            power[t] = power[t] + flash
    if s.smoothing > 0:
        sig = (0, s.smoothing, s.smoothing)
        pv = ndimage.gaussian_filter(power * vel, sig)
        power = ndimage.gaussian_filter(power, sig)
        vel = pv / np.maximum(power, 1e-6)
    # Persistence: power-weighted recursive frame average.
    if s.persistence > 0:
        p = np.float32(s.persistence)
        for t in range(1, shape[0]):
            pw = (1 - p) * power[t] + p * power[t - 1]
            vel[t] = ((1 - p) * power[t] * vel[t] + p * power[t - 1] * vel[t - 1]) / np.maximum(pw, 1e-6)
            power[t] = pw
    # Aliasing: the estimator measures a phase, so velocities wrap within [lo, lo + 2 Nyquist).
    lo = -s.nyquist * (1 - s.baseline)
    vel = np.mod(vel - lo, 2 * s.nyquist) + lo
    var = None
    if s.variance and s.mode == "velocity":
        spread = np.abs(ndimage.gaussian_gradient_magnitude(vel, (0, 1.0, 1.0))) / s.nyquist
        var = np.clip(spread * 0.5 + (flow.turbulence if flow.turbulence is not None else 0), 0, 1)
        var = var.astype(np.float32)
    return power.astype(np.float32), vel.astype(np.float32), var


def colorize(power: np.ndarray, vel: np.ndarray, var: np.ndarray | None,
             settings: ColorFlowSettings) -> np.ndarray:
    """(T, h, w, 3) uint8 display colours for the estimates (before write priority)."""
    s = settings
    if s.mode == "power":
        idx = np.clip((power - s.threshold) / max(1.0 - s.threshold, 1e-3) * 255, 0, 255).astype(np.intp)
        return power_lut()[idx]
    hi = s.nyquist * (1 + s.baseline)
    lo = s.nyquist * (1 - s.baseline)
    pos = vel >= 0
    u = np.where(pos, vel / hi, -vel / lo)
    k = np.clip(np.round(u * 127), 0, 127).astype(np.intp)
    idx = np.where(pos, 128 + k, 127 - k)
    if var is not None:
        levels = 8
        lev = np.clip(np.round(var * (levels - 1)), 0, levels - 1).astype(np.intp)
        return variance_lut(levels, s.invert)[lev, idx]
    return velocity_lut(s.invert)[idx]


def render_color_flow(bmode: Cine, flow: FlowField, box: np.ndarray, settings: ColorFlowSettings,
                      rng: np.random.Generator, *, outline: np.ndarray | None = None,
                      shared: Overlay | None = None, cfd_only: Overlay | None = None) -> ColorFlowClip:
    """Render a CFD clip and its ground truth.

    bmode:    Cine (T, H, w_img) grey uint8, the image (one image, even in dual display).
    flow:     FlowField at (T, H/f, w_img/f) for an integer f.
    box:      (H, w_img) bool colour box (inside the field of view); outline: (H, w_img) bool.
    shared / cfd_only: overlays at the display size: (H, w_img) or, in dual display, (H, 2 w_img).
    Returns a ColorFlowClip whose display frames are (T, H, W), W = w_img or 2 w_img (dual).
    """
    s = settings
    frames = np.asarray(bmode.frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"the B-mode cine must be grey uint8 (T,H,W), got {frames.dtype} {frames.shape}")
    t_, h, w = frames.shape
    ft, fh, fw = flow.velocity.shape
    if ft != t_ or h % fh or w % fw:
        raise ValueError(f"flow field {flow.velocity.shape} does not divide the cine {frames.shape}")
    fy, fx = h // fh, w // fw
    if box.shape != (h, w):
        raise ValueError(f"colour box {box.shape} does not match the image {(h, w)}")
    box_lo = box[::fy, ::fx] if (fy > 1 or fx > 1) else box
    power, vel, var = estimate_display(flow, s, rng, box_lo)
    colors = _upsample(colorize(power, vel, var, s), fy, fx)
    passed = _upsample(power > s.threshold, fy, fx)
    write = passed & box[None] & (frames < s.priority)

    img_cfd = np.repeat(frames[..., None], 3, axis=-1)
    img_cfd[write] = colors[write]
    if outline is not None and s.outline_level > 0:
        img_cfd[:, outline] = s.outline_level

    if s.dual:
        gt = np.concatenate([frames, frames], axis=2)
        cfd = np.concatenate([np.repeat(frames[..., None], 3, axis=-1), img_cfd], axis=2)
    else:
        gt = frames.copy()
        cfd = img_cfd
    if cfd_only is not None:
        cfd_only.apply(cfd)
    if shared is not None:
        shared.apply(gt)
        shared.apply(cfd)
    mask = (cfd != gt[..., None]).any(axis=-1)
    coverage = float(mask.mean())
    spacing = bmode.spacing
    gt_cine = Cine(gt, spacing=spacing, origin=bmode.origin, direction=bmode.direction,
                   times=bmode.times, meta=dict(bmode.meta))
    info = {"settings": s.to_dict(), "coverage": coverage}
    return ColorFlowClip(cfd=gt_cine.with_frames(cfd), bmode=gt_cine,
                         mask=gt_cine.with_frames(mask.astype(np.uint8)), coverage=coverage, info=info)
