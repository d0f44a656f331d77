"""Find colour-Doppler pixels in RGB ultrasound frames.

Scanners paint flow in saturated warm hues (red/orange/yellow: velocity toward the probe, power
Doppler) or bright blues (velocity away). Grey B-mode, tinted palettes and thin coloured text
are not flow: a pixel counts when its chroma is high, its hue is warm or bright blue, and it
survives a 3x3 opening (which removes 1-2 pixel wide text strokes and markers).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

MIN_CHROMA = 60          # max(R,G,B) - min(R,G,B), 8-bit
MIN_BLUE = 150           # velocity-away blues are bright; UI bars and tints are dark
FLOW_FRACTION = 0.005    # a frame "has colour flow" above 0.5 % flow pixels


def color_flow_mask(frames: np.ndarray) -> np.ndarray:
    """Boolean (T, H, W) mask of colour-flow pixels in (T, H, W, 3) uint8 frames.

    Grey cines (T, H, W) give an all-False mask.
    """
    if frames.ndim == 3:
        return np.zeros(frames.shape, dtype=bool)
    f = np.asarray(frames, dtype=np.int16)
    r, b = f[..., 0], f[..., 2]
    chroma = f.max(axis=-1) - f.min(axis=-1)
    saturated = chroma >= MIN_CHROMA
    warm = saturated & (r >= b + MIN_CHROMA)
    cool = saturated & (b >= r + MIN_CHROMA) & (b >= MIN_BLUE)
    return ndi.binary_opening(warm | cool, structure=np.ones((1, 3, 3), bool))


def color_flow_fraction(frames: np.ndarray, max_frames: int = 64) -> float:
    """Largest per-frame fraction of colour-flow pixels (frames subsampled to ``max_frames``)."""
    if frames.ndim == 3 or frames.shape[0] == 0:
        return 0.0
    idx = np.unique(np.linspace(0, frames.shape[0] - 1, min(max_frames, frames.shape[0])).astype(int))
    mask = color_flow_mask(np.asarray(frames[idx]))
    return float(mask.reshape(mask.shape[0], -1).mean(axis=1).max())


def has_color_flow(frames: np.ndarray) -> bool:
    return color_flow_fraction(frames) >= FLOW_FRACTION
