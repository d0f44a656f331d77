"""The picture in docs/simulation.md: low quality, high quality, labels and attenuation of one pose.

    python -m USGenLib.simulation.figure docs/images/simulation_low_high_labels_attenuation.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from USGenLib.io.atomic import atomic_path
from USGenLib.simulation.phantoms import make_phantom
from USGenLib.simulation.simulate import Simulator
from USGenLib.simulation.tissues import label_colors


def comparison_figure(path: str | Path, phantom: str = "abdomen", seed: int = 0, size: int = 256,
                      probe: str = "convex") -> Path:
    """Simulate the default pose of ``phantom`` at low and high quality and write the four panels
    side by side (PNG, captions under each panel). Returns ``path``."""
    volume = make_phantom(phantom, seed=seed)
    panels, captions = [], []
    for quality, caption in (("low", "low quality (1 ray, 1 layer)"), ("high", "high quality (32 rays, 3 layers)")):
        res = Simulator(volume, probe, quality, size=(size, size), seed=seed).simulate(progress_stage=None)
        panels.append(np.repeat(res.bmode.frames[0][..., None], 3, -1))
        captions.append(caption)
    panels.append(label_colors(res.labels.frames[0]))
    captions.append("labels")
    panels.append(np.repeat(np.round(res.attenuation.frames[0] * 255).astype(np.uint8)[..., None], 3, -1))
    captions.append("attenuation map")
    rows = np.nonzero(res.fov_mask.array[0].any(axis=1))[0]
    crop = slice(0, min(size, int(rows.max()) + 4))  # drop the empty rows under the sector
    font = ImageFont.load_default()
    tiles = []
    for img, caption in zip(panels, captions):
        canvas = Image.new("RGB", (size + 6, crop.stop + 18), (24, 24, 24))
        canvas.paste(Image.fromarray(np.ascontiguousarray(img[crop])), (3, 2))
        ImageDraw.Draw(canvas).text((6, crop.stop + 4), caption, fill=(230, 230, 230), font=font)
        tiles.append(np.asarray(canvas))
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(tiles, axis=1)).save(tmp, format="PNG", optimize=True)
    return path


if __name__ == "__main__":
    print(comparison_figure(sys.argv[1] if len(sys.argv) > 1 else "simulation.png"))
