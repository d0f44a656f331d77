"""Native-geometry handling for CFD removal: display regions, temporal windows, crops to and from the network.

Everything here maps between the input's own pixel grid and the network's, and back exactly: the
network only ever sees a padded, rescaled crop around the colour, and only its pixels under the mask
return to the input grid. Arrays are NumPy (T, H, W) unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
import torch.nn.functional as F

DARK = 8          # a column whose brightest pixel is below this (over sampled frames) is background
MULTIPLE = 8      # the networks need H and W divisible by 8


def display_regions(sample: np.ndarray) -> list[tuple[int, int]]:
    """Column ranges of the displays in a frame: two for a dual display (B-mode | colour side by side,
    split at the dark gutter nearest the centre), else one. ``sample``: (T, H, W) grey frames."""
    w = sample.shape[-1]
    profile = sample.max(axis=(0, 1)) if sample.ndim == 3 else sample.max(axis=0)
    lo, hi = int(0.4 * w), int(0.6 * w)
    dark = np.flatnonzero(profile[lo:hi] < DARK) + lo
    left, right = profile[: int(0.3 * w)], profile[int(0.7 * w):]
    if len(dark) == 0 or (left >= DARK).mean() < 0.3 or (right >= DARK).mean() < 0.3:
        return [(0, w)]
    cut = int(dark[np.argmin(np.abs(dark - w / 2))])
    return [(0, cut), (cut, w)]


def temporal_windows(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) windows of at most ``window`` frames, each sharing ``overlap`` frames with the next."""
    step = max(window - overlap, 1)
    return [(s, min(s + window, num_frames)) for s in range(0, max(num_frames - overlap, 1), step)]


def blend_weights(start: int, stop: int, num_frames: int, overlap: int) -> np.ndarray:
    """(stop - start,) cross-fade weights: ramps inside the overlaps, 1 at the clip's own ends."""
    n = stop - start
    w = np.ones(n, np.float32)
    ramp = (np.arange(1, overlap + 1, dtype=np.float32)) / (overlap + 1)
    if start > 0:
        w[:overlap] = np.minimum(w[:overlap], ramp[: min(overlap, n)])
    if stop < num_frames:
        w[n - overlap:] = np.minimum(w[n - overlap:], ramp[::-1][: min(overlap, n)])
    return w


@dataclass(frozen=True)
class Crop:
    """A box of the input grid (rows y0:y1, columns x0:x1) and its size on the network's grid."""

    y0: int
    y1: int
    x0: int
    x1: int
    net_h: int            # rescaled size, before padding
    net_w: int

    @property
    def padded(self) -> tuple[int, int]:
        return -(-self.net_h // MULTIPLE) * MULTIPLE, -(-self.net_w // MULTIPLE) * MULTIPLE


def crops_for(mask: np.ndarray, region: tuple[int, int], scale: float, margin: int) -> list[Crop]:
    """Boxes around the mask's pixels in ``region`` (any frame), each grown by ``margin`` network pixels;
    separate colour areas (the flow box, the colour bar) get separate boxes, merged where they overlap,
    so the networks compute on the colour and its context only."""
    union = mask[..., region[0]:region[1]].any(axis=0)
    labels, _ = ndi.label(union)
    m = int(np.ceil(margin / scale))
    h, w = union.shape
    boxes = [[max(sy.start - m, 0), min(sy.stop + m, h), max(sx.start - m, 0), min(sx.stop + m, w)]
             for sy, sx in ndi.find_objects(labels)]
    merged = True
    while merged:  # grown boxes that touch become one
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = [min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [Crop(y0, y1, x0 + region[0], x1 + region[0], max(1, round((y1 - y0) * scale)),
                 max(1, round((x1 - x0) * scale))) for y0, y1, x0, x1 in boxes]


def to_network(grey: np.ndarray, mask: np.ndarray, crop: Crop) -> torch.Tensor:
    """(T, H, W) uint8 grey and bool mask -> (1, 2, T, h, w) float tensor on the network's grid:
    grey zeroed under the mask, then the mask; rescaled (area) and padded by edge replication."""
    g = torch.from_numpy(np.ascontiguousarray(grey[:, crop.y0:crop.y1, crop.x0:crop.x1])).float() / 255.0
    m = torch.from_numpy(np.ascontiguousarray(mask[:, crop.y0:crop.y1, crop.x0:crop.x1])).float()
    x = torch.stack([g * (1 - m), m])[None]  # (1, 2, T, h, w)
    size = (crop.net_h, crop.net_w)
    if size != tuple(g.shape[-2:]):
        x = F.interpolate(x, size=(x.shape[2], *size), mode="area")
        # A network pixel is hidden when any input pixel under it is: the fill then covers them all.
        x[:, 1] = (x[:, 1] > 0).float()
        x[:, 0] = x[:, 0] * (1 - x[:, 1])
    ph, pw = crop.padded
    if (ph, pw) != size:
        x = F.pad(x.reshape(1, -1, *size), (0, pw - size[1], 0, ph - size[0]), mode="replicate")
        x = x.reshape(1, 2, -1, ph, pw)
    return x


def from_network(y: torch.Tensor, crop: Crop) -> np.ndarray:
    """(1, 1, T, ph, pw) network output -> (T, y1-y0, x1-x0) float32 in [0, 255] on the input grid."""
    y = y[..., : crop.net_h, : crop.net_w]
    size = (crop.y1 - crop.y0, crop.x1 - crop.x0)
    if size != (crop.net_h, crop.net_w):
        y = F.interpolate(y, size=(y.shape[2], *size), mode="trilinear", align_corners=False)
    return (y[0, 0].float().clamp(0, 1) * 255.0).cpu().numpy()
