"""Previews for people: animated GIF and PNG contact sheets (several frames or several cines)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path
from USGenLib.io.video import display_window, to_uint8
from USGenLib.types import Cine

MAX_ASPECT = 64  # a frame wider or taller than this (in mm) is a spacing error, not a picture


def _rgb(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=-1)


def write_gif(cine: Cine, path: str | Path, max_frames: int = 120) -> Path:
    """Animated GIF at the cine's frame rate (grey cines keep all 256 levels)."""
    path = Path(path)
    step = max(1, int(np.ceil(cine.num_frames / max_frames)))
    # the window from the whole clip, then only the frames shown are read (a long clip streams)
    frames = to_uint8(cine.frames[::step], display_window(cine.frames, cine.meta.get("source")))
    duration_ms = int(round(1000.0 / (cine.fps or 1.0) * step))
    mode = "RGB" if cine.is_rgb else "L"
    images = [Image.fromarray(np.ascontiguousarray(f), mode=mode) for f in frames]
    if cine.is_rgb:
        images = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms,
                       loop=0, optimize=False)
    return path


def contact_sheet(cines: Sequence[Cine], frames_per_row: int = 6, tile_height: int = 160,
                  labels: Sequence[str] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 grid: one row per cine, ``frames_per_row`` evenly spaced frames each,
    tiles scaled to ``tile_height`` keeping the physical aspect ratio, frame time under each tile."""
    rows = []
    font = ImageFont.load_default()
    label_w = 0 if not labels else 110
    for n, cine in enumerate(cines):
        window = display_window(cine.frames, cine.meta.get("source"))
        idx = np.unique(np.linspace(0, cine.num_frames - 1, min(frames_per_row, cine.num_frames)).astype(int))
        aspect = (cine.width * cine.spacing[0]) / (cine.height * cine.spacing[1])
        if not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
            raise UsgenInputError(cine.meta.get("source"), f"frames are {aspect:.3g} times as wide as tall in "
                                                           f"millimetres (spacing {cine.spacing[0]:g} x "
                                                           f"{cine.spacing[1]:g} mm); a contact sheet shows "
                                                           f"1:{MAX_ASPECT} to {MAX_ASPECT}:1")
        tile_w = max(1, int(round(tile_height * aspect)))
        tiles = []
        for t in idx:
            frame = to_uint8(cine.frames[int(t)], window)
            im = Image.fromarray(np.ascontiguousarray(_rgb(frame))).resize((tile_w, tile_height), Image.BILINEAR)
            canvas = Image.new("RGB", (tile_w + 4, tile_height + 16), (24, 24, 24))
            canvas.paste(im, (2, 2))
            ImageDraw.Draw(canvas).text((4, tile_height + 3), f"t={cine.times[t]:.3f}s", fill=(220, 220, 220), font=font)
            tiles.append(np.asarray(canvas))
        row = np.concatenate(tiles, axis=1)
        if labels:
            lab = Image.new("RGB", (label_w, row.shape[0]), (24, 24, 24))
            ImageDraw.Draw(lab).text((4, row.shape[0] // 2 - 6), str(labels[n])[:18], fill=(255, 255, 255), font=font)
            row = np.concatenate([np.asarray(lab), row], axis=1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=24) for r in rows]
    return np.concatenate(rows, axis=0)


def write_contact_sheet(cines: Cine | Sequence[Cine], path: str | Path, **kwargs) -> Path:
    path = Path(path)
    cines = [cines] if isinstance(cines, Cine) else list(cines)
    sheet = contact_sheet(cines, **kwargs)
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    return path
