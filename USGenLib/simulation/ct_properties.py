"""CT numbers (HU) to acoustic properties.

Density: the piecewise-linear fit to Schneider et al. (1996) data that k-Wave uses
(``hounsfield2density``). That fit is written for "HU + 1000" (air = 0, water = 1000), the
convention of raw CT values with the rescale intercept not applied; we add 1000 to true HU before
using it. Speed of sound: Mast (2000)'s empirical soft-tissue relation rho = 0.893 c - 349, i.e.
c = (rho + 349) / 0.893, for rho <= 1100 kg/m^3; above, the bone relation c = 1.33 rho + 167
used with the same fit in k-Wave/transcranial work (both meet at about 1625 m/s).
Attenuation and scattering have no CT calibration: they are interpolated in HU between the
anchors of the tissue table (air, lung, fat, water, soft tissue, liver, bone).
"""

from __future__ import annotations

import numpy as np

from USGenLib.simulation.tissues import AIR, BONE, FAT, LUNG, SOFT, TISSUES, WATER_LABEL

# k-Wave hounsfield2density: (x = HU + 1000) -> kg/m^3, linear pieces [slope, intercept].
_SCHNEIDER_PIECES = (
    (930.0, (1.025793065681423, -5.680404011488714)),   # x < 930: air, lung, fat
    (1098.0, (0.9082709691264, 103.6151457847139)),     # 930 <= x <= 1098: soft tissue
    (1260.0, (0.5108369316599, 539.9977189228704)),     # 1098 < x < 1260: soft tissue to bone
    (np.inf, (0.6625370912451, 348.8555178455294)),     # x >= 1260: bone
)

# HU anchors for the properties CT does not calibrate: (HU, tissue label) pairs, interpolated linearly.
_ANCHORS = ((-1000.0, AIR), (-750.0, LUNG), (-100.0, FAT), (0.0, WATER_LABEL), (15.0, WATER_LABEL),
            (45.0, SOFT), (60.0, 6), (150.0, SOFT), (1000.0, BONE))

# CT label thresholds (HU) for the label output: below -900 air, lung, fat, fluid, soft tissue, bone.
CT_LABEL_EDGES = (-900.0, -300.0, -30.0, 20.0, 200.0)
CT_LABEL_VALUES = (AIR, LUNG, FAT, WATER_LABEL, SOFT, BONE)


def hu_to_density(hu: np.ndarray) -> np.ndarray:
    """HU -> density in kg/m^3 (float32), clipped at air's 1.2 kg/m^3."""
    x = np.asarray(hu, dtype=np.float32) + 1000.0  # the fit's HU+1000 convention
    (s1, i1), (s2, i2), (s3, i3), (s4, i4) = (p[1] for p in _SCHNEIDER_PIECES)
    # k-Wave's intervals: x < 930, 930 <= x <= 1098, 1098 < x < 1260, x >= 1260
    out = np.select([x < 930.0, x <= 1098.0, x < 1260.0],
                    [s1 * x + i1, s2 * x + i2, s3 * x + i3], s4 * x + i4).astype(np.float32)
    return np.maximum(out, 1.2, out=out)


def density_to_speed(rho: np.ndarray) -> np.ndarray:
    """Density (kg/m^3) -> speed of sound (m/s): Mast 2000 below 1100 kg/m^3, bone relation above."""
    rho = np.asarray(rho, dtype=np.float32)
    return np.where(rho <= 1100.0, (rho + 349.0) / 0.893, 1.33 * rho + 167.0).astype(np.float32)


def _interp_column(hu: np.ndarray, column: str) -> np.ndarray:
    xs = np.array([a[0] for a in _ANCHORS], dtype=np.float32)
    ys = np.array([getattr(TISSUES[a[1]], column) for a in _ANCHORS], dtype=np.float32)
    return np.interp(hu, xs, ys).astype(np.float32)


def hu_to_properties(hu: np.ndarray) -> dict[str, np.ndarray]:
    """HU array -> dict of float32 arrays: density, speed, impedance (MRayl), attenuation
    (dB/cm/MHz), scatter_density, scatter_amplitude. Same shape as ``hu``."""
    hu = np.asarray(hu, dtype=np.float32)
    rho = hu_to_density(hu)
    c = density_to_speed(rho)
    return {
        "density": rho,
        "speed": c,
        "impedance": (rho * c * 1e-6).astype(np.float32),
        "attenuation": _interp_column(hu, "attenuation"),
        "scatter_density": _interp_column(hu, "scatter_density"),
        "scatter_amplitude": _interp_column(hu, "scatter_amplitude"),
    }


def hu_to_labels(hu: np.ndarray) -> np.ndarray:
    """HU -> tissue-table labels (uint8) by thresholds: air < -900 <= lung < -300 <= fat < -30 <=
    fluid (water) < 20 <= soft tissue < 200 <= bone."""
    idx = np.searchsorted(np.asarray(CT_LABEL_EDGES, dtype=np.float32), np.asarray(hu, dtype=np.float32), side="right")
    return np.asarray(CT_LABEL_VALUES, dtype=np.uint8)[idx]


def detect_hu_offset(hu: np.ndarray) -> float:
    """The offset to subtract to get true HU: 1000 when the volume looks like "HU + 1000" data,
    else 0. Such data has nothing below 0 and its soft tissue near 1000, so more voxels lie in
    850..1150 than in 0..150 (where true-HU soft tissue lies). Override with an explicit offset."""
    a = np.asarray(hu)
    sample = a.reshape(-1)[:: max(1, a.size // 200_000)]
    if sample.min() < 0 or sample.max() <= 1000:
        return 0.0
    shifted_soft = np.count_nonzero((sample >= 850) & (sample <= 1150))
    true_soft = np.count_nonzero(sample <= 150)
    return 1000.0 if shifted_soft > true_soft else 0.0


def labels_to_hu(labels: np.ndarray) -> np.ndarray:
    """Label map -> a plausible CT (float32 HU) from the table's typical HU values."""
    from USGenLib.simulation.tissues import lookup

    return lookup(labels, "hu")
