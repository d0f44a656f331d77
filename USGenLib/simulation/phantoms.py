"""Label-map phantoms generated from a seed (nothing external needed).

Axes follow an axial CT in LPS with identity direction: i runs to the patient's left, j from
anterior (j = 0, the skin under the default probe pose) to posterior, k from inferior to superior.
Shapes are perturbed by smooth random fields and jittered in position and size by the seed.

- abdomen: subcutaneous fat and abdominal muscle of varying thickness, liver with hepatic vessels
  and an anechoic cyst, a kidney with renal-sinus fat, aorta and inferior vena cava, a vertebral
  body, and two ribs under the skin that cast acoustic shadows.
- fetal:   maternal fat and muscle, a uterus filled with amniotic fluid, a placenta, the fetal body
  with a spine, and the fetal head with a bony skull.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from USGenLib.errors import UsgenInputError
from USGenLib.simulation.tissues import BLOOD, BONE, FAT, KIDNEY, LIVER, MUSCLE, SOFT, WATER_LABEL
from USGenLib.types import Volume

DEFAULT_SHAPES = {"abdomen": (96, 144, 224), "fetal": (96, 128, 192)}  # (K, J, I)
DEFAULT_EXTENT_MM = {"abdomen": (120.0, 180.0, 280.0), "fetal": (120.0, 160.0, 240.0)}  # (k, j, i) mm


class _Grid:
    """Broadcastable mm coordinates of a (K, J, I) grid: x (lateral, centred), y (depth from 0), z (centred)."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        k, j, i = shape
        sx, sy, sz = spacing
        self.shape, self.spacing = shape, spacing
        self.x = ((np.arange(i) - (i - 1) / 2) * sx).astype(np.float32)[None, None, :]
        self.y = (np.arange(j) * sy).astype(np.float32)[None, :, None]
        self.z = ((np.arange(k) - (k - 1) / 2) * sz).astype(np.float32)[:, None, None]

    def ellipsoid(self, c, r, warp=None, rot_deg: float = 0.0) -> np.ndarray:
        """Normalised radius field (< 1 inside) of an ellipsoid rotated by rot_deg about z."""
        a = np.deg2rad(rot_deg)
        dx, dy, dz = self.x - c[0], self.y - c[1], self.z - c[2]
        u = np.cos(a) * dx + np.sin(a) * dy
        v = -np.sin(a) * dx + np.cos(a) * dy
        f = np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (dz / r[2]) ** 2)
        return f if warp is None else f + warp

    def tube(self, p0, direction, radius: float) -> np.ndarray:
        """Boolean cylinder of ``radius`` around the line through p0 along ``direction``."""
        d = np.asarray(direction, dtype=np.float64)
        d = d / np.linalg.norm(d)
        dx, dy, dz = self.x - p0[0], self.y - p0[1], self.z - p0[2]
        t = dx * d[0] + dy * d[1] + dz * d[2]
        dist2 = dx ** 2 + dy ** 2 + dz ** 2 - t ** 2
        return dist2 < radius ** 2

    def smooth_noise(self, rng: np.random.Generator, coarse: int = 6) -> np.ndarray:
        """Smooth random field, unit-ish amplitude, full grid shape (float32)."""
        field = rng.standard_normal((coarse, coarse, coarse))
        factors = [s / coarse for s in self.shape]
        return ndimage.zoom(field, factors, order=3, mode="nearest")[: self.shape[0], : self.shape[1], : self.shape[2]].astype(np.float32)

    def surface_noise(self, rng: np.random.Generator, coarse: int = 6) -> np.ndarray:
        """Smooth random height field over (k, i), shaped (K, 1, I)."""
        field = rng.standard_normal((coarse, coarse))
        out = ndimage.zoom(field, (self.shape[0] / coarse, self.shape[2] / coarse), order=3, mode="nearest")
        return out[: self.shape[0], : self.shape[2]].astype(np.float32)[:, None, :]


def _geometry(name: str, shape, spacing):
    if shape is None:
        shape = DEFAULT_SHAPES[name]
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UsgenInputError(None, f"phantom shape must be three positive sizes (K, J, I), got {shape}")
    if spacing is None:  # keep the physical extent whatever the shape
        ext = DEFAULT_EXTENT_MM[name]
        spacing = (ext[2] / shape[2], ext[1] / shape[1], ext[0] / shape[0])
    return shape, tuple(float(s) for s in spacing)


def _volume(labels: np.ndarray, spacing, name: str, seed: int) -> Volume:
    k, j, i = labels.shape
    sx, sy, sz = spacing
    origin = (-(i - 1) / 2 * sx, 0.0, -(k - 1) / 2 * sz)  # x and z centred on 0, the skin at y = 0
    return Volume(array=labels.astype(np.uint8), spacing=spacing, origin=origin, direction=np.eye(3),
                  kind="labels", meta={"source": f"phantom:{name}", "phantom": name, "seed": int(seed)})


def abdomen_phantom(seed: int = 0, shape: tuple[int, int, int] | None = None,
                    spacing: tuple[float, float, float] | None = None) -> Volume:
    """Abdominal label phantom (K, J, I), default 96 x 144 x 224 voxels over 120 x 180 x 280 mm."""
    shape, spacing = _geometry("abdomen", shape, spacing)
    g = _Grid(shape, spacing)
    rng = np.random.default_rng(seed)
    jit = lambda s: float(rng.uniform(-s, s))  # noqa: E731
    lab = np.full(shape, SOFT, dtype=np.uint8)

    fat_bottom = 10.0 + jit(3) + 4.0 * g.surface_noise(rng)
    muscle_bottom = fat_bottom + 9.0 + jit(2) + 2.0 * g.surface_noise(rng)
    lab[np.broadcast_to(g.y < fat_bottom, shape)] = FAT
    lab[np.broadcast_to((g.y >= fat_bottom) & (g.y < muscle_bottom), shape)] = MUSCLE
    warp = 0.06 * g.smooth_noise(rng)

    liver_c = (-35.0 + jit(8), 78.0 + jit(6), jit(8))
    liver_r = (88.0 + jit(8), 48.0 + jit(5), 75.0 + jit(8))
    liver = (g.ellipsoid(liver_c, liver_r, warp, rot_deg=-12.0 + jit(6)) < 1.0) & (g.y > muscle_bottom + 3.0)
    lab[liver] = LIVER
    for _ in range(3):  # hepatic veins: thin tubes inside the liver
        p0 = (liver_c[0] + jit(40), liver_c[1] + jit(20), liver_c[2] + jit(20))
        d = rng.normal(size=3)
        lab[liver & g.tube(p0, d, 2.5 + jit(1.0))] = BLOOD
    cyst_c = (liver_c[0] - 25.0 + jit(8), liver_c[1] - 5.0 + jit(6), liver_c[2] + jit(10))
    lab[(g.ellipsoid(cyst_c, (9.0, 8.0, 9.0)) < 1.0)] = WATER_LABEL

    kidney_c = (45.0 + jit(8), 125.0 + jit(6), jit(8))
    kidney_f = g.ellipsoid(kidney_c, (27.0, 20.0, 48.0), 0.5 * warp, rot_deg=25.0 + jit(8))
    lab[kidney_f < 1.0] = KIDNEY
    lab[kidney_f < 0.45] = FAT  # renal sinus

    lab[g.tube((8.0 + jit(4), 118.0 + jit(4), 0.0), (0.0, 0.05, 1.0), 10.0)] = BLOOD   # aorta
    lab[g.tube((-20.0 + jit(4), 112.0 + jit(4), 0.0), (0.0, -0.05, 1.0), 9.0)] = BLOOD  # inferior vena cava
    lab[g.ellipsoid((0.0 + jit(3), 160.0 + jit(4), 0.0), (20.0, 16.0, 1e4)) < 1.0] = BONE  # vertebral body

    for side in (-1.0, 1.0):  # ribs: bone cylinders just under the muscle, nearly along z
        x = side * (48.0 + jit(8))
        y = float(np.mean(muscle_bottom)) + 9.0 + jit(2)
        lab[g.tube((x, y, 0.0), (jit(0.15), jit(0.1), 1.0), 6.0 + jit(1.0))] = BONE
    return _volume(lab, spacing, "abdomen", seed)


def fetal_phantom(seed: int = 0, shape: tuple[int, int, int] | None = None,
                  spacing: tuple[float, float, float] | None = None) -> Volume:
    """Obstetric label phantom (K, J, I), default 96 x 128 x 192 voxels over 120 x 160 x 240 mm."""
    shape, spacing = _geometry("fetal", shape, spacing)
    g = _Grid(shape, spacing)
    rng = np.random.default_rng(seed + 1_000_003)
    jit = lambda s: float(rng.uniform(-s, s))  # noqa: E731
    lab = np.full(shape, SOFT, dtype=np.uint8)
    fat_bottom = 9.0 + jit(2) + 3.0 * g.surface_noise(rng)
    lab[np.broadcast_to(g.y < fat_bottom, shape)] = FAT
    warp = 0.04 * g.smooth_noise(rng)

    uterus_c = (jit(8), 88.0 + jit(5), jit(6))
    uterus_r = (100.0 + jit(8), 62.0 + jit(4), 58.0 + jit(5))
    wall = g.ellipsoid(uterus_c, (uterus_r[0] + 8, uterus_r[1] + 8, uterus_r[2] + 8), warp) < 1.0
    lab[wall & (g.y >= fat_bottom)] = MUSCLE
    fluid = g.ellipsoid(uterus_c, uterus_r, warp) < 1.0
    lab[fluid] = WATER_LABEL
    placenta = fluid & (g.ellipsoid((uterus_c[0] + 40 + jit(15), uterus_c[1] - 55, uterus_c[2]),
                                    (70.0, 28.0, 60.0)) < 1.0)
    lab[placenta] = SOFT

    body_c = (22.0 + jit(8), 98.0 + jit(5), jit(6))
    rot = jit(15)
    body = fluid & (g.ellipsoid(body_c, (42.0, 26.0, 32.0), 0.5 * warp, rot_deg=rot) < 1.0)
    lab[body] = SOFT
    a = np.deg2rad(rot)
    for t in np.arange(-32.0, 33.0, 8.0):  # spine: vertebrae along the body's back
        c = (body_c[0] + t * np.cos(a) - 19.0 * np.sin(a), body_c[1] + t * np.sin(a) + 19.0 * np.cos(a), body_c[2])
        lab[g.ellipsoid(c, (3.2, 3.2, 3.2)) < 1.0] = BONE

    head_c = (body_c[0] - 70.0 + jit(5), body_c[1] - 8.0 + jit(5), body_c[2] + jit(4))
    head_r = 30.0 + jit(3)
    head = g.ellipsoid(head_c, (head_r, head_r * 0.85, head_r * 0.9))
    lab[fluid & (head < 1.0)] = BONE           # skull
    lab[fluid & (head < 0.9)] = SOFT           # brain
    lab[fluid & (g.ellipsoid(head_c, (head_r * 0.5, 1.2, head_r * 0.7)) < 1.0)] = SOFT
    return _volume(lab, spacing, "fetal", seed)


PHANTOMS = {"abdomen": abdomen_phantom, "fetal": fetal_phantom}


def make_phantom(name: str, seed: int = 0, shape: tuple[int, int, int] | None = None,
                 spacing: tuple[float, float, float] | None = None) -> Volume:
    """The phantom ``name`` ("abdomen" or "fetal") as a label Volume; the same seed gives the same voxels."""
    if name not in PHANTOMS:
        raise UsgenInputError(None, f"unknown phantom '{name}' (choose {', '.join(PHANTOMS)})")
    return PHANTOMS[name](seed=seed, shape=shape, spacing=spacing)


def phantom_to_ct(volume: Volume) -> Volume:
    """A label phantom as a CT in HU (typical HU per tissue), for exercising the CT path."""
    from USGenLib.simulation.ct_properties import labels_to_hu

    return Volume(array=labels_to_hu(volume.array), spacing=volume.spacing, origin=volume.origin,
                  direction=volume.direction, kind="ct", meta={**volume.meta, "converted": "labels_to_hu"})


__all__ = ["abdomen_phantom", "fetal_phantom", "make_phantom", "phantom_to_ct", "PHANTOMS"]
