"""Find colour-Doppler pixels in RGB ultrasound frames.

Two masks, for two uses:

- ``color_flow_mask``: colour-flow *blobs*, to tell whether a cine shows colour flow (``usgen info``,
  ``has_color_flow``): colour pixels that survive a 3x3 opening, so 1-2 pixel wide coloured text,
  ECG traces and markers do not count.
- ``removal_mask``: every pixel whose grey B-mode value is hidden by colour, the pixels the CFD
  remover must inpaint: flow of any map, the colour bar, coloured text and markers, plus the fringe
  that JPEG compression and chroma subsampling smear around them. Outside it, the frame's
  luminance is already the B-mode screen.

What counts as colour. Flow maps (velocity red/blue ramps, variance green, orange/yellow/magenta
power maps) are *saturated*: their smallest channel is far below their largest, even at the dark
near-zero-velocity ends of a ramp, e.g. (40, 0, 0). Grey B-mode has no chroma; tinted B-mode palettes
(sepia, blue-grey) and scanner UI bars have some chroma but low saturation (chroma / max < 0.5;
Philips' header blue (37, 62, 94) is 0.61). So a pixel is colour when its chroma is high
(>= 100) or when it is moderately chromatic and saturated. Dark colours near the noise floor of
JPEG chroma (chroma 20-40 on dark grey speckle edges) only count when they touch stronger colour
(hysteresis), as the dark ends of a velocity ramp always do. A tinted-grey palette strong enough to
look saturated is undone first: its hue is constant and its chroma proportional to brightness, so
per-channel gains measured on the frames map it back to grey (``_palette``).
"""

from __future__ import annotations

import numpy as np

# Chroma = max(R,G,B) - min(R,G,B) and saturation = chroma / max, 8-bit.
STRONG_CHROMA = 100       # this much chroma is colour whatever the saturation (yellow, cyan, hot-map ends)
MIN_CHROMA = 40           # saturated pixels from here on are colour on their own
WEAK_CHROMA = 20          # saturated but dark: colour only when connected to stronger colour
MIN_SATURATION = 0.7      # flow maps: ~1 (0.45 at a hot map's white end, caught by STRONG_CHROMA)
FRINGE_CHROMA = 12        # JPEG / YBR_422 fringe: above the chroma noise of grey JPEG speckle
FRINGE_REACH = 3          # pixels: lossy JPEG rings 1-3 px, 4:2:2 subsampling smears 1 px sideways
SPECK_CHROMA = 30         # faint flow specks: weak Doppler blended with grey (pale, 1-2 px)...
SPECK_REACH = 9           # ...a few pixels from the flow region they belong to
HYSTERESIS_STEPS = 4      # pixels a weak dark colour may lie from strong colour
TINT_MIN = 0.03           # per-channel gain deviation below which a cine is plain grey
FLOW_FRACTION = 0.005     # a frame "has colour flow" above 0.5 % flow pixels


# ---------------------------------------------------------------- fast 3x3 morphology on bools

def _grow(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Dilate (T, H, W) bool by ``steps`` pixels with a square (8-connected) element.

    Shifted ORs on numpy slices: an order of magnitude faster than scipy's binary_dilation
    on 256x256 frames, which matters because the mask runs on every frame of ``usgen cfd remove``.
    """
    out = mask.copy()
    for _ in range(steps):
        row = out.copy()
        row[:, :, 1:] |= out[:, :, :-1]
        row[:, :, :-1] |= out[:, :, 1:]
        out = row.copy()
        out[:, 1:] |= row[:, :-1]
        out[:, :-1] |= row[:, 1:]
    return out


def _shrink(mask: np.ndarray) -> np.ndarray:
    """Erode (T, H, W) bool by one pixel (3x3 square); pixels beyond the frame count as set."""
    row = mask.copy()
    row[:, :, 1:] &= mask[:, :, :-1]
    row[:, :, :-1] &= mask[:, :, 1:]
    out = row.copy()
    out[:, 1:] &= row[:, :-1]
    out[:, :-1] &= row[:, 1:]
    return out


def _open(mask: np.ndarray) -> np.ndarray:
    """3x3 opening of (T, H, W) bool: removes strokes and dots under 3 pixels wide."""
    return _grow(_shrink(mask))


# ---------------------------------------------------------------- tinted grey palettes

def _palette(frames: np.ndarray, max_pixels: int = 16_384) -> tuple[np.ndarray | None, int]:
    """(gains, floor) of the B-mode palette of (T, H, W, 3) uint8 frames.

    gains: (3,) float per-channel gains of a tinted-grey palette, or None for a grey one. A tinted
    palette shows grey level v as (v*gR, v*gG, v*gB): a constant hue whose chroma grows with
    brightness. The gains are the median channel/max ratios of low-saturation pixels, taken per
    brightness band and then across bands, so a flat UI bar (one brightness) or colour flow (a
    minority in every band) does not set them. None when they are within ``TINT_MIN`` of 1 or
    there is too little B-mode to tell.
    floor: the median chroma of the B-mode left after undoing the tint (0 for a grey palette).
    Lossy compression of a tinted cine scatters its chroma (4:2:0 subsampling averages the
    speckle's chroma), so every chroma threshold is raised by twice this floor.
    """
    f = frames.reshape(-1, 3)
    # A strided sample is plenty for seven medians and keeps this well under 1 ms a call.
    step = max(1, f.shape[0] // max_pixels) | 1   # odd, so the sample does not lock onto columns
    f = f[::step].astype(np.int16)
    mx = f.max(axis=1)
    chroma = mx - f.min(axis=1)
    keep = (mx >= 48) & (2 * chroma < mx)       # bright enough to measure, saturation < 0.5
    f, mx = f[keep], mx[keep]
    band = mx // 32                              # bands 1..7
    ratios = []
    for k in range(1, 8):
        sel = band == k
        if sel.sum() >= 100:
            ratios.append(np.median(f[sel] / mx[sel, None], axis=0))
    if len(ratios) < 3:
        return None, 0
    gains = np.median(np.array(ratios), axis=0)
    if np.all(np.abs(gains - 1) < TINT_MIN):
        return None, 0
    grey = f / gains
    return gains, int(np.median(grey.max(axis=1) - grey.min(axis=1)))


def _untint(frames: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with the palette's per-channel gains divided out (one LUT per channel)."""
    levels = np.arange(256, dtype=np.float64)
    out = np.empty_like(frames)
    for c in range(3):
        lut = np.clip(np.round(levels / max(gains[c], 1e-3)), 0, 255).astype(np.uint8)
        out[..., c] = lut[frames[..., c]]
    return out


# ---------------------------------------------------------------- masks

def _chroma(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chroma, max) of (T, H, W, 3) uint8 frames, both (T, H, W) int16 (per-channel ufuncs: fast)."""
    r, g, b = frames[..., 0], frames[..., 1], frames[..., 2]
    mx = np.maximum(np.maximum(r, g), b).astype(np.int16)
    mn = np.minimum(np.minimum(r, g), b).astype(np.int16)
    return mx - mn, mx


def _colour_and_chroma(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(colour (T,H,W) bool, chroma (T,H,W) int16, floor) of (T, H, W, 3) uint8 frames, tint undone.

    floor: the palette's chroma floor (``_palette``), already added to the colour thresholds.
    """
    frames = np.asarray(frames)
    gains, floor = _palette(frames)
    if gains is not None:
        frames = _untint(frames, gains)
    chroma, mx = _chroma(frames)
    lift = 2 * floor
    saturated = 10 * chroma >= int(10 * MIN_SATURATION) * mx
    strong = (chroma >= STRONG_CHROMA + lift) | (saturated & (chroma >= MIN_CHROMA + lift))
    # Dark saturated ramp ends join the colour they touch. (Pale colours do not: JPEG smears
    # coloured text into pale blobs that would pass for flow; removal_mask takes them as specks.)
    joins = strong | (saturated & (chroma >= WEAK_CHROMA + lift))
    colour = strong
    for _ in range(HYSTERESIS_STEPS):
        colour = _grow(colour) & joins
    return colour, chroma, floor


def color_mask(frames: np.ndarray) -> np.ndarray:
    """Boolean (T, H, W) mask of every coloured pixel in (T, H, W, 3) uint8 frames.

    Flow of any map, colour bars, coloured text and markers; not grey, tinted-grey B-mode or
    low-saturation UI bars. Grey cines (T, H, W) give an all-False mask.
    """
    if frames.ndim == 3:
        return np.zeros(frames.shape, dtype=bool)
    return _colour_and_chroma(frames)[0]


def color_flow_mask(frames: np.ndarray) -> np.ndarray:
    """Boolean (T, H, W) mask of colour-flow pixels in (T, H, W, 3) uint8 frames.

    Coloured pixels that survive a 3x3 opening: flow regions, without thin coloured text, traces
    and markers. Grey cines (T, H, W) give an all-False mask.
    """
    return _open(color_mask(frames))


def removal_mask(frames: np.ndarray, dilate: int = 0) -> np.ndarray:
    """Boolean (T, H, W) mask of the pixels a CFD remover must inpaint in (T, H, W, 3) uint8 frames.

    Every coloured pixel (``color_mask``), plus its compression fringe: pixels within
    ``FRINGE_REACH`` of colour whose chroma exceeds the noise of grey JPEG speckle, plus faint
    specks (chroma >= ``SPECK_CHROMA``) within ``SPECK_REACH`` of colour; then grown by
    ``dilate`` more pixels unconditionally (a safety margin against luminance ringing). Bright
    B-mode speckle that shows through a flow region (write priority) is the true B-mode and stays
    out, as in the data set's ground truth; small holes close through the fringe.
    Grey cines (T, H, W) give an all-False mask.
    """
    if frames.ndim == 3:
        return np.zeros(frames.shape, dtype=bool)
    colour, chroma, floor = _colour_and_chroma(frames)
    near = _grow(colour, FRINGE_REACH)
    fringe = near & (chroma >= FRINGE_CHROMA + 2 * floor)
    specks = _grow(near, SPECK_REACH - FRINGE_REACH) & (chroma >= SPECK_CHROMA + 2 * floor)
    mask = colour | fringe | specks
    return _grow(mask, dilate) if dilate > 0 else mask


def color_flow_fraction(frames: np.ndarray, max_frames: int = 64) -> float:
    """Largest per-frame fraction of colour-flow pixels (frames subsampled to ``max_frames``)."""
    if frames.ndim == 3 or frames.shape[0] == 0:
        return 0.0
    idx = np.unique(np.linspace(0, frames.shape[0] - 1, min(max_frames, frames.shape[0])).astype(int))
    mask = color_flow_mask(np.asarray(frames[idx]))
    return float(mask.reshape(mask.shape[0], -1).mean(axis=1).max())


def has_color_flow(frames: np.ndarray) -> bool:
    return color_flow_fraction(frames) >= FLOW_FRACTION
