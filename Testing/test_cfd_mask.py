"""The CFD mask: which pixels are colour flow, and which the CFD remover must inpaint.

Synthetic frames for every flow map a scanner shows and for what must not count (tinted B-mode,
coloured text), pydicom's real ultrasound files, and generated CFD clips against their ground truth.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from USGenLib.cfd import color_flow_fraction, color_flow_mask, color_mask, has_color_flow, removal_mask
from USGenLib.datasets.cfd_scene import make_cfd_clip
from USGenLib.datasets.color_flow import power_lut, variance_lut
from USGenLib.io import read_cine

LUMA = np.float32([0.299, 0.587, 0.114])


def speckle(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(H, W) uint8 grey B-mode-like speckle (Rayleigh, log-compressed, median ~100)."""
    rng = np.random.default_rng(seed)
    n = ndi.gaussian_filter(rng.standard_normal((2, h, w)), (0, 0.8, 1.2))
    amp = np.hypot(n[0], n[1]) / np.sqrt(np.mean(n[0] ** 2 + n[1] ** 2))
    echo = 0.3 + 0.7 * ndi.gaussian_filter(rng.random((h, w)), 6)
    db = 20 * np.log10(np.maximum(amp * echo, 1e-3))
    return np.clip((db + 30) / 50 * 255, 0, 255).astype(np.uint8)


def rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def jpeg(frame: np.ndarray, quality: int = 75) -> np.ndarray:
    """(H, W, 3) uint8 through PIL's JPEG (4:2:0 chroma subsampling at this quality)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def ramp(u: np.ndarray, stops: list) -> np.ndarray:
    """(N, 3) uint8 colours interpolated between (position, (r, g, b)) stops at positions ``u``."""
    pos = [s[0] for s in stops]
    cols = np.array([s[1] for s in stops], float)
    return np.stack([np.interp(u, pos, cols[:, c]) for c in range(3)], -1).round().astype(np.uint8)


def chroma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.int16)
    return f.max(-1) - f.min(-1)


def disc(h: int, w: int, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r ** 2


# ---------------------------------------------------------------- flow maps

def velocity_ramp(width: int) -> np.ndarray:
    """(width, 3): away (blue) on the left, toward (red) on the right, both dark near zero velocity."""
    u = np.linspace(-1, 1, width)
    away = ramp(-u, [(0, (0, 0, 30)), (0.6, (20, 40, 255)), (1, (90, 230, 255))])
    toward = ramp(u, [(0, (30, 0, 0)), (0.6, (255, 20, 0)), (1, (255, 230, 90))])
    return np.where((u < 0)[:, None], away, toward)


def test_velocity_ramp_is_flow_down_to_its_dark_near_zero_ends():
    colours = velocity_ramp(96)
    assert chroma(colours).min() < 40  # the dark ends are low-chroma, like dark grey speckle edges
    frame = rgb(speckle(128, 160))
    frame[40:80, 32:128] = colours[None]
    box = np.zeros((128, 160), bool)
    box[40:80, 32:128] = True
    mask = color_flow_mask(frame[None])[0]
    assert mask[box].all() and not mask[~box].any()
    assert has_color_flow(frame[None])
    assert np.array_equal(removal_mask(frame[None])[0], box)  # no fringe without compression


@pytest.mark.parametrize("name", ["variance", "power", "magenta"])
def test_variance_and_power_maps_are_flow(name):
    if name == "variance":  # 8 variance levels, green added up to 200, over the whole velocity map
        patch = np.repeat(variance_lut(8), 4, axis=0)
    elif name == "power":  # dark red -> orange -> yellow -> near white
        patch = np.repeat(power_lut()[None], 32, axis=0)
    else:  # a magenta hot map up to a pale pink top
        patch = np.repeat(ramp(np.linspace(0, 1, 256), [(0, (60, 0, 60)), (0.6, (230, 0, 200)),
                                                        (1, (255, 150, 255))])[None], 32, axis=0)
    frame = rgb(speckle(96, 320, 1))
    frame[32:64, 32:288] = patch
    box = np.zeros((96, 320), bool)
    box[32:64, 32:288] = True
    flow = color_flow_mask(frame[None])[0]
    assert flow[box].mean() > 0.99 and not flow[~box].any()
    assert removal_mask(frame[None])[0][box].all()


# ---------------------------------------------------------------- what is not flow

@pytest.mark.parametrize("tint", [(1.0, 0.8, 0.55), (0.6, 0.8, 1.0)], ids=["sepia", "blue"])
def test_tinted_grey_bmode_is_not_colour(tint):
    grey = speckle(128, 160)
    tinted = np.round(rgb(grey) * np.float32(tint)).astype(np.uint8)
    assert chroma(tinted).max() > 60  # bright tinted speckle: the old rule's colour chroma
    assert color_flow_fraction(tinted[None]) == 0.0 and not removal_mask(tinted[None]).any()
    # Flow on the tinted B-mode is found exactly, without fringe leaking into the tinted speckle.
    blob = disc(128, 160, 20)
    tinted[blob] = (200, 20, 10)
    assert np.array_equal(removal_mask(tinted[None])[0], blob)


def coloured_text(frame: np.ndarray, y: int) -> np.ndarray:
    """Draw four lines of 1-px coloured scanner text on an (H, W, 3) frame from row ``y``; returns it."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"  # scanner fonts are bitmaps: 1-px strokes, no anti-aliasing
    font = ImageFont.load_default(size=11)
    for i, col in enumerate([(255, 255, 0), (0, 255, 0), (255, 60, 0), (80, 160, 255)]):
        draw.text((4, y + 14 * i), "CF 5.0MHz PRF 2.5k", fill=col, font=font)
    return np.asarray(img)


@pytest.mark.parametrize("background", ["black", "speckle"])
def test_coloured_text_is_removed_but_is_not_flow(background):
    grey = np.zeros((128, 256), np.uint8) if background == "black" else speckle(128, 256, 2)
    frame = coloured_text(rgb(grey), 60)
    text = chroma(frame) > 0
    assert text.mean() > 0.03  # far denser than on a scanner screen
    assert color_flow_fraction(frame[None]) == 0.0 and not has_color_flow(frame[None])
    assert np.array_equal(removal_mask(frame[None])[0], text)


def test_jpeg_colour_blob_fringe_is_in_the_removal_mask():
    grey = speckle(128, 160, 3)
    frame = rgb(grey)
    blob = disc(128, 160, 24)
    u = np.clip((np.mgrid[:128, :160][1] - 56) / 48, 0, 1)  # velocity across the vessel: blue -> red
    frame[blob] = velocity_ramp(256)[np.round(u * 255).astype(int)][blob]
    lossy = jpeg(frame)
    mask = removal_mask(lossy[None])[0]
    # JPEG darkens the darkest near-zero-velocity pixels to black: nothing left to find there.
    missed = blob & ~mask
    assert missed.mean() < 0.001 and (lossy[missed].astype(np.float32) @ LUMA).max() < 10
    fringe = mask & ~blob
    assert fringe.any() and not (fringe & ~ndi.binary_dilation(blob, iterations=9)).any()
    # Chroma left outside is faint ringing within the blob's 16x16 JPEG blocks; it does not reach
    # the output, which is the luminance there, and that is the B-mode as exactly as JPEG keeps a
    # grey image.
    left = chroma(lossy) * ~mask
    assert left.max() <= 30 and not (left > 16)[~ndi.binary_dilation(blob, iterations=16)].any()
    err = np.abs(lossy.astype(np.float32) @ LUMA - grey)[~mask & ~blob]
    grey_err = np.abs(jpeg(rgb(grey)).astype(np.float32) @ LUMA - grey)
    assert err.max() <= grey_err.max() + 3 and err.mean() <= grey_err.mean() + 0.5
    assert color_flow_mask(lossy[None])[0][blob].mean() > 0.97


# ---------------------------------------------------------------- real files

@pytest.mark.parametrize("name", ["rgb_color", "jpeg2k"])
def test_power_doppler_lymph_node_mask_leaves_only_grey(dicoms, name):
    frames = np.asarray(read_cine(dicoms[name]).frames)
    mask = removal_mask(frames)
    assert 0.04 < mask.mean() < 0.08
    assert chroma(frames)[~mask].max() <= 16
    assert 0.04 < color_flow_fraction(frames) < 0.06


@pytest.mark.parametrize("name", ["palette", "ybr_color"])
def test_scanner_files_without_flow_give_no_flow_mask(dicoms, name):
    frames = np.asarray(read_cine(dicoms[name]).frames)
    assert color_flow_fraction(frames) < 0.001 and not has_color_flow(frames)
    # Only a coloured logo or marker at most; the Philips header's blue is UI, not colour flow.
    assert removal_mask(frames).mean() < 0.003


def test_grey_cines_give_empty_masks():
    grey = speckle(32, 48)[None]
    for fn in (color_mask, color_flow_mask, removal_mask):
        out = fn(grey)
        assert out.shape == grey.shape and out.dtype == bool and not out.any()


# ---------------------------------------------------------------- generated CFD clips

@pytest.fixture(scope="module")
def clips():
    return [make_cfd_clip(np.random.default_rng(seed), size=(128, 128), frames=6,
                          target_coverage=(0.05, 0.1, 0.2)[seed % 3]) for seed in range(12)]


def test_removal_mask_finds_the_coloured_ground_truth(clips):
    """Recall over ground-truth pixels that are coloured on the CFD screen; precision over the mask.

    Measured on 60 clips of ``usgen dataset cfd`` (256x256): recall 1.000, precision 1.000, and
    after JPEG quality 75 recall 0.998 (the old warm/bright-blue rule: 0.71 and 0.67).
    """
    hit = coloured = inside = predicted = 0
    for clip in clips:
        cfd, gt = np.asarray(clip.cfd.frames), np.asarray(clip.mask.frames).astype(bool)
        pred = removal_mask(cfd)
        col = gt & (chroma(cfd) > 8)
        hit, coloured = hit + (pred & col).sum(), coloured + col.sum()
        inside, predicted = inside + (pred & gt).sum(), predicted + pred.sum()
    assert hit / coloured > 0.995 and inside / predicted > 0.995


def test_removal_mask_after_jpeg_leaves_the_bmode_outside(clips):
    hit = coloured = 0
    errs, grey_errs = [], []
    for clip in clips[:6]:
        cfd, gt = np.asarray(clip.cfd.frames), np.asarray(clip.mask.frames).astype(bool)
        bmode = np.asarray(clip.bmode.frames).astype(np.float32)
        lossy = np.stack([jpeg(f) for f in cfd])
        pred = removal_mask(lossy)
        col = gt & (chroma(cfd) > 8)
        hit, coloured = hit + (pred & col).sum(), coloured + col.sum()
        # Grey pixels of the mask (box outline, grey colour-mode text) are no colour rule's to find.
        keep = ~pred & ~(gt & ~col)
        errs.append(np.abs(lossy.astype(np.float32) @ LUMA - bmode)[keep])
        grey_errs.append(np.abs(np.stack([jpeg(f) for f in rgb(bmode.astype(np.uint8))]).astype(np.float32) @ LUMA
                                - bmode).ravel())
    assert hit / coloured > 0.98
    err, grey_err = np.concatenate(errs), np.concatenate(grey_errs)
    assert np.percentile(err, 99.9) <= np.percentile(grey_err, 99.9) + 5
    assert err.mean() <= grey_err.mean() + 0.5
