"""Burned-in screen overlays: text, fiducials, colour bars (drawn with Pillow, once per clip).

An ``Overlay`` is a static layer composited on top of every frame: ``values`` (H, W) grey or
(H, W, 3) RGB and ``alpha`` (H, W) bool. Shared overlays (patient-free scanner text, depth
scale, focus marker, orientation mark, calipers) appear in both the CFD frame and its ground-truth
B-mode frame; colour-flow-only overlays (colour bar, CF settings text) only in the CFD frame.
All text is synthetic (made-up settings, never names, dates of real people or UIDs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from USGenLib.datasets.geometry import BeamGrid


@dataclass
class Overlay:
    """values: (H, W) uint8 grey or (H, W, 3) uint8 RGB; alpha: (H, W) bool, where it is drawn."""

    values: np.ndarray
    alpha: np.ndarray

    def apply(self, frames: np.ndarray) -> None:
        """Composite in place onto (T, H, W) grey or (T, H, W, 3) RGB frames."""
        if not self.alpha.any():
            return
        vals = self.values[self.alpha]
        if frames.ndim == 4 and vals.ndim == 1:
            vals = np.repeat(vals[:, None], 3, axis=1)
        elif frames.ndim == 3 and vals.ndim == 2:
            raise ValueError("an RGB overlay cannot go on grey frames")
        frames[:, self.alpha] = vals


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(int(size), 6))


def _canvas(shape: tuple[int, int], mode: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new(mode, (shape[1], shape[0]), 0)
    return img, ImageDraw.Draw(img)


def _to_overlay(img: Image.Image) -> Overlay:
    arr = np.asarray(img)
    alpha = arr > 0 if arr.ndim == 2 else arr.any(axis=-1)
    return Overlay(arr.copy(), alpha)


def shared_overlay(shape: tuple[int, int], grid: BeamGrid, rng: np.random.Generator, *,
                   text: bool = True, fiducials: bool = True, x_offset: int = 0,
                   probe_name: str = "C5-1", dual: bool = False) -> Overlay:
    """Grey scanner annotations present in both the CFD frame and the ground truth.

    shape is the full display frame (H, W); ``grid`` describes the image placed at ``x_offset``
    (the right-hand image in dual display; the left one gets the same fiducials when ``dual``).
    """
    h, w = shape
    img, draw = _canvas(shape, "L")
    fs = max(7, h // 28)
    font = _font(fs)
    if text:
        level = int(rng.integers(170, 256))
        lines = [f"USGen {probe_name}", f"{rng.uniform(2.0, 12.0):.1f}MHz  Gn {int(rng.integers(20, 80))}",
                 f"DR {int(rng.integers(45, 75))}  FR {int(rng.integers(12, 60))}"]
        y = 1
        for line in lines[: 1 + int(rng.integers(0, len(lines)))]:
            draw.text((2, y), line, fill=level, font=font)
            y += fs + 1
        if rng.random() < 0.6:
            draw.text((w - fs * 5, 1), f"MI {rng.uniform(0.2, 1.4):.1f}", fill=level, font=font)
        if rng.random() < 0.5:
            draw.text((w - fs * 6, h - fs - 3), f"{rng.integers(1, 9)}/{rng.integers(1, 9)} cm", fill=level, font=font)
    if fiducials:
        offsets = [x_offset, 0] if dual and x_offset else [x_offset]
        level = int(rng.integers(150, 256))
        for off in offsets:
            _depth_scale(draw, grid, off, level, rng)
            # Focus marker: a small triangle beside the field of view at the focal depth.
            fdepth = rng.uniform(0.3, 0.8) * grid.max_depth
            x, y = grid.to_pixel(fdepth, -grid.half_width)
            x = float(x) + off - 4
            y = float(y)
            draw.polygon([(x - 3, y - 3), (x - 3, y + 3), (x + 1, y)], fill=level)
            # Orientation mark at the top-left corner of the image.
            x0, y0 = grid.to_pixel(0.0, -grid.half_width)
            draw.ellipse([float(x0) + off - 3, float(y0) + 1, float(x0) + off + 2, float(y0) + 6], fill=level)
        if rng.random() < 0.3:  # a pair of calipers inside the image
            for _ in range(2):
                cx, cy = grid.to_pixel(rng.uniform(0.2, 0.8) * grid.max_depth,
                                       rng.uniform(-0.6, 0.6) * grid.half_width)
                cx = float(cx) + x_offset
                cy = float(cy)
                draw.line([(cx - 3, cy), (cx + 3, cy)], fill=level)
                draw.line([(cx, cy - 3), (cx, cy + 3)], fill=level)
    return _to_overlay(img)


def _depth_scale(draw: ImageDraw.ImageDraw, grid: BeamGrid, x_offset: int, level: int,
                 rng: np.random.Generator) -> None:
    """Tick marks every centimetre (longer every 5 cm) just outside the right edge of the image."""
    step = 10.0 if grid.max_depth <= 100 else 20.0
    for i, d in enumerate(np.arange(0.0, grid.max_depth + 1e-6, step)):
        x, y = grid.to_pixel(d, grid.half_width)
        x = float(x) + x_offset + 2
        ln = 4 if i % 5 == 0 else 2
        draw.line([(x, float(y)), (x + ln, float(y))], fill=level)


def color_bar_overlay(shape: tuple[int, int], lut: np.ndarray, labels: tuple[str, str, str], *,
                      x: int, y: int, width: int, height: int, rng: np.random.Generator,
                      cf_text: bool = True) -> Overlay:
    """The colour scale shown beside a CFD image (CFD frame only).

    lut: (N, 3) uint8, first row drawn at the top. labels: (top, bottom, unit) texts.
    Also writes the colour-flow settings text block when ``cf_text``.
    """
    h, w = shape
    img, draw = _canvas(shape, "RGB")
    rows = np.clip(np.linspace(0, len(lut) - 1, height).round().astype(int), 0, len(lut) - 1)
    bar = np.repeat(lut[rows][:, None, :], width, axis=1)
    base = np.zeros((h, w, 3), np.uint8)
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + height, h), min(x + width, w)
    base[y0:y1, x0:x1] = bar[y0 - y:y1 - y, x0 - x:x1 - x]
    img.paste(Image.fromarray(base), mask=Image.fromarray((base.any(-1) * 255).astype(np.uint8)))
    fs = max(7, h // 30)
    font = _font(fs)
    grey = (int(rng.integers(180, 256)),) * 3
    top, bottom, unit = labels
    draw.text((x, max(y - fs - 2, 0)), top, fill=grey, font=font)
    draw.text((x, min(y + height + 1, h - fs - 1)), bottom, fill=grey, font=font)
    if unit:
        draw.text((x + width + 2, y + height // 2 - fs // 2), unit, fill=grey, font=font)
    if cf_text:
        lines = [f"CF {rng.uniform(2.0, 8.0):.1f}MHz", f"PRF {rng.uniform(0.5, 8.0):.1f}k",
                 f"WF {int(rng.integers(40, 400))}Hz", f"CG {int(rng.integers(30, 90))}"]
        n = 1 + int(rng.integers(0, len(lines)))
        yy = h - (fs + 1) * n - 2
        for line in lines[:n]:
            draw.text((2, yy), line, fill=grey, font=font)
            yy += fs + 1
    return _to_overlay(img)
