"""The tissue table: acoustic properties per label, as used for label maps and phantoms.

Label values are the row numbers below (0 = air, which is also what pixels outside the field of
view get in the label output). Speed of sound, density and attenuation are rounded literature
values; docs/simulation.md lists the sources per column. Scatterer density (fraction of the
scatterer lattice that holds a scatterer; 1 = fully developed speckle) and amplitude (backscatter
amplitude relative to liver) are appearance parameters in the spirit of Buerger et al. 2013 and
the paper's "sonographers' visual inspection": no tissue database lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tissue:
    """One row of the tissue table.

    label:              integer value in label maps.
    name:               tissue name.
    speed:              speed of sound, m/s.
    density:            kg/m^3.
    attenuation:        dB/(cm MHz), linear frequency dependence assumed.
    scatter_density:    0..1, fraction of scatterer sites occupied (1 = fully developed speckle).
    scatter_amplitude:  backscatter amplitude relative to liver (0 = anechoic).
    hu:                 a typical CT number (HU), used to turn label phantoms into CT volumes.
    """

    label: int
    name: str
    speed: float
    density: float
    attenuation: float
    scatter_density: float
    scatter_amplitude: float
    hu: float

    @property
    def impedance(self) -> float:
        """Characteristic acoustic impedance Z = rho * c in MRayl (10^6 kg m^-2 s^-1)."""
        return self.density * self.speed * 1e-6


TISSUES: tuple[Tissue, ...] = (
    #      label  name           c (m/s) rho     alpha  dens  amp    HU
    Tissue(0, "air",            343.0,   1.2,    7.5,   0.0,  0.0,  -1000.0),
    Tissue(1, "water",          1480.0,  1000.0, 0.0022, 0.0, 0.0,   0.0),
    Tissue(2, "fat",            1478.0,  950.0,  0.63,  0.3,  0.5,  -100.0),
    Tissue(3, "soft tissue",    1540.0,  1050.0, 0.54,  1.0,  0.8,   40.0),
    Tissue(4, "muscle",         1580.0,  1050.0, 1.09,  1.0,  0.45,  50.0),
    Tissue(5, "blood",          1584.0,  1060.0, 0.15,  1.0,  0.03,  40.0),
    Tissue(6, "liver",          1595.0,  1060.0, 0.50,  1.0,  1.0,   60.0),
    Tissue(7, "kidney",         1560.0,  1050.0, 1.00,  1.0,  0.7,   30.0),
    Tissue(8, "bone",           3500.0,  1900.0, 15.0,  1.0,  1.5,   1000.0),
    Tissue(9, "lung",           650.0,   400.0,  40.0,  1.0,  0.5,  -750.0),
)

LABELS: dict[str, int] = {t.name: t.label for t in TISSUES}
# Display colours (RGB 0..1) per label, for previews and .seg.nrrd segments.
DISPLAY_COLORS: dict[int, tuple[float, float, float]] = {
    0: (0.0, 0.0, 0.0), 1: (0.35, 0.6, 0.95), 2: (0.95, 0.85, 0.45), 3: (0.85, 0.55, 0.5),
    4: (0.75, 0.25, 0.25), 5: (0.85, 0.05, 0.1), 6: (0.6, 0.35, 0.2), 7: (0.55, 0.75, 0.35),
    8: (0.97, 0.97, 0.92), 9: (0.7, 0.7, 0.95),
}
WATER = TISSUES[1]
AIR, WATER_LABEL, FAT, SOFT, MUSCLE, BLOOD, LIVER, KIDNEY, BONE, LUNG = (LABELS[n] for n in (
    "air", "water", "fat", "soft tissue", "muscle", "blood", "liver", "kidney", "bone", "lung"))


def tissue_table() -> list[dict]:
    """The table as plain dicts (with impedance), for meta.json and the docs."""
    rows = []
    for t in TISSUES:
        row = asdict(t)
        row["impedance"] = round(t.impedance, 5)
        row["color"] = list(DISPLAY_COLORS[t.label])  # the Slicer module colours its segments with these
        rows.append(row)
    return rows


def lookup(labels: np.ndarray, column: str, unknown: float | None = None) -> np.ndarray:
    """Map a label array to one column of the table (float32, same shape).

    Labels outside the table raise ValueError unless ``unknown`` gives a fill value.
    """
    values = np.array([getattr(t, column) if column != "impedance" else t.impedance for t in TISSUES],
                      dtype=np.float32)
    labels = np.asarray(labels)
    bad = (labels < 0) | (labels >= len(TISSUES))
    if np.any(bad):
        if unknown is None:
            raise ValueError(f"labels {sorted(set(np.unique(labels[bad]).tolist()))[:8]} are not in the tissue table "
                             f"(0..{len(TISSUES) - 1})")
        out = np.full(labels.shape, unknown, dtype=np.float32)
        out[~bad] = values[labels[~bad].astype(np.intp)]
        return out
    return values[labels.astype(np.intp)]


def label_colors(labels: np.ndarray) -> np.ndarray:
    """Tissue labels (any shape, uint8) -> RGB uint8 (shape + (3,)) in the display colours."""
    lut = np.zeros((256, 3), np.uint8)
    for value, rgb in DISPLAY_COLORS.items():
        lut[value] = np.round(np.asarray(rgb) * 255)
    return lut[np.asarray(labels)]
