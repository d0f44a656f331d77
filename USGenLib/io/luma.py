"""RGB -> grey as scanners mean it: BT.601 luma, shared by the jobs that take colour cines in."""

from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601: equal to the value on grey pixels (R = G = B)


def luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W) uint8 BT.601 luma; exact on grey pixels (R = G = B)."""
    f = frames.astype(np.float32)
    return np.rint(f @ np.float32(LUMA_WEIGHTS)).clip(0, 255).astype(np.uint8)
