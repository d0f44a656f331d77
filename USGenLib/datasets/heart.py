"""A parametric beating heart with an exactly known ejection fraction (analytic, in millimetres).

Heart coordinates (mm): origin at the LV cavity centre at end-diastole (ED); z along the LV long
axis toward the base (apex at negative z); x toward the right ventricle (septum side); y posterior
(so -y is anterior, toward the chest wall).

Left ventricle: a prolate ellipsoid cavity (short semi-axis a, long semi-axis c) truncated by the
mitral-annulus plane z = trunc * c, with a myocardial wall (thicker at systole). The ventricle
contracts self-similarly about a pivot on the long axis (the short-axis imaging plane): radial
scale kR, longitudinal scale kL = kR^beta. The cavity volume is

    V = pi a^2 c [ (1 + trunc) - (1 + trunc^3) / 3 ]            (truncated prolate ellipsoid)

so V scales with kR^2 kL = kR^(2 + beta) and, for a requested EF, kR at end-systole (ES) is
(1 - EF)^(1 / (2 + beta)): ESV = (1 - EF) EDV holds exactly. The default beta = 1 (self-similar
contraction about the short-axis plane) makes single-plane estimates exact in every view: discs in
long-axis planes, V ~ A^(3/2) in the short-axis plane. RV, atria, aorta and pericardium are
simpler ellipsoids and a tube, so the simulator sees a four-chamber anatomy in every view.

``structures(points, s)`` labels points at contraction state s (0 = ED, 1 = ES) with the
``STRUCT_*`` ids; ``tissue_labels`` maps those to the simulator's tissue table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from USGenLib.simulation.tissues import BLOOD, FAT, LIVER, MUSCLE, SOFT

STRUCT_BACKGROUND, STRUCT_LV, STRUCT_MYO, STRUCT_RV, STRUCT_LA, STRUCT_RA, STRUCT_AORTA, STRUCT_RV_WALL, \
    STRUCT_PERICARDIUM, STRUCT_FAT, STRUCT_VALVE, STRUCT_ATRIAL_WALL = range(12)
STRUCT_NAMES = ("background", "lv", "myocardium", "rv", "la", "ra", "aorta", "rv wall", "pericardium",
                "epicardial fat", "valve", "atrial wall")
# Structure id -> tissue-table label (USGenLib.simulation.tissues).
TISSUE_OF = np.array([MUSCLE, BLOOD, SOFT, BLOOD, BLOOD, BLOOD, BLOOD, SOFT, LIVER, FAT, LIVER, SOFT],
                     dtype=np.uint8)


def truncated_ellipsoid_volume(a: float, c: float, zt: float) -> float:
    """Volume (mm^3) of {x^2/a^2 + y^2/a^2 + z^2/c^2 <= 1, z <= zt}, -c <= zt <= c."""
    zt = float(np.clip(zt, -c, c))
    return float(np.pi * a * a * ((zt + c) - (zt ** 3 + c ** 3) / (3 * c * c)))


@dataclass
class HeartParams:
    """Anatomy at end-diastole (mm), contraction and rhythm. ``ef`` is a fraction (0..1)."""

    a: float = 24.0             # LV cavity short semi-axis
    c: float = 55.0             # LV cavity long semi-axis
    trunc: float = 0.45         # mitral plane height above the cavity centre, fraction of c
    wall: float = 9.0           # LV wall thickness (ED)
    apex_wall: float = 7.0
    thickening: float = 0.4     # relative wall thickening at ES
    beta: float = 1.0           # longitudinal vs radial shortening exponent (1: self-similar)
    pivot: float = -0.05        # contraction centre on the long axis, fraction of c (short-axis plane)
    rv_scale: float = 1.0
    atrium_scale: float = 1.0
    ef: float = 0.6
    heart_rate: float = 70.0    # beats per minute
    systole: float = 0.35       # fraction of the cycle from ED to ES

    @classmethod
    def random(cls, rng: np.random.Generator, ef: float | None = None) -> "HeartParams":
        """Adult-like variation of size, shape, wall, rhythm; EF from ``ef`` or drawn (normal mostly)."""
        if ef is None:
            ef = rng.normal(0.6, 0.07) if rng.random() < 0.7 else rng.uniform(0.15, 0.5)
            ef = float(np.clip(ef, 0.12, 0.8))
        hr = float(rng.uniform(50, 110))
        return cls(a=float(rng.uniform(19, 28)), c=float(rng.uniform(45, 62)), trunc=float(rng.uniform(0.35, 0.55)),
                   wall=float(rng.uniform(7, 12)), apex_wall=float(rng.uniform(5, 8)),
                   thickening=float(rng.uniform(0.2, 0.5)) * min(1.0, ef / 0.5), beta=1.0,
                   pivot=float(rng.uniform(-0.15, 0.05)), rv_scale=float(rng.uniform(0.85, 1.15)),
                   atrium_scale=float(rng.uniform(0.85, 1.2)), ef=float(ef), heart_rate=hr,
                   systole=float(np.clip(0.3 + 0.12 * (hr - 60) / 60, 0.25, 0.45)))

    def to_dict(self) -> dict:
        return asdict(self)


class BeatingHeart:
    """The heart at contraction state s in [0, 1] (0 = ED, 1 = ES); volumes in ml."""

    def __init__(self, params: HeartParams):
        if not 0 < params.ef < 1:
            raise ValueError(f"EF must lie in (0, 1), got {params.ef}")
        self.p = params
        self.kr_es = (1.0 - params.ef) ** (1.0 / (2.0 + params.beta))

    # ------------------------------------------------------------------ LV geometry
    def scales(self, s: float) -> tuple[float, float]:
        kr = 1.0 - s * (1.0 - self.kr_es)
        return kr, kr ** self.p.beta

    def lv(self, s: float) -> dict:
        """LV cavity and wall at state s: a, c, centre z, truncation z (all heart coordinates), wall."""
        p = self.p
        kr, kl = self.scales(s)
        zp = p.pivot * p.c
        zc = zp + kl * (0.0 - zp)
        return {"a": kr * p.a, "c": kl * p.c, "zc": zc, "zt": zp + kl * (p.trunc * p.c - zp),
                "wall": p.wall * (1 + p.thickening * s), "apex_wall": p.apex_wall * (1 + p.thickening * s)}

    def volume(self, s: float) -> float:
        """LV cavity volume in ml at state s (analytic)."""
        g = self.lv(s)
        return truncated_ellipsoid_volume(g["a"], g["c"], g["zt"] - g["zc"]) / 1000.0

    @property
    def edv(self) -> float:
        return self.volume(0.0)

    @property
    def esv(self) -> float:
        return self.volume(1.0)

    @property
    def ef(self) -> float:
        """(EDV - ESV) / EDV as a fraction; equals params.ef to rounding."""
        return (self.edv - self.esv) / self.edv

    # ------------------------------------------------------------------ timing
    def state(self, phase: np.ndarray) -> np.ndarray:
        """Contraction state s (0 ED .. 1 ES) at cardiac phase in [0, 1) (0 = ED).

        Systole: cosine ejection to ES at ``systole``; diastole: rapid filling (to 25 % of the stroke
        left), slow filling (diastasis), atrial contraction back to ED at phase 1.
        """
        ph = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
        ps = self.p.systole
        rapid_end = ps + 0.6 * (0.85 - ps)
        s = np.empty_like(ph)
        m1 = ph <= ps
        s[m1] = 0.5 - 0.5 * np.cos(np.pi * ph[m1] / ps)
        m2 = (ph > ps) & (ph <= rapid_end)
        x = (ph[m2] - ps) / (rapid_end - ps)
        s[m2] = 1.0 - 0.75 * (0.5 - 0.5 * np.cos(np.pi * x))
        m3 = (ph > rapid_end) & (ph <= 0.85)
        x = (ph[m3] - rapid_end) / (0.85 - rapid_end)
        s[m3] = 0.25 - 0.07 * x
        m4 = ph > 0.85
        x = (ph[m4] - 0.85) / 0.15
        s[m4] = 0.18 * (0.5 + 0.5 * np.cos(np.pi * x))
        return s

    # ------------------------------------------------------------------ labelling
    def structures(self, pts: np.ndarray, s: float, phase: float | None = None) -> np.ndarray:
        """(N,) uint8 structure ids (STRUCT_*) of points (N, 3) in heart coordinates at state s.

        ``phase`` (cardiac phase) closes the mitral valve in systole; None leaves it open.
        """
        p = self.p
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        out = np.full(x.shape, STRUCT_BACKGROUND, np.uint8)
        g = self.lv(s)
        a, c, zc, zt, w, wa = g["a"], g["c"], g["zc"], g["zt"], g["wall"], g["apex_wall"]
        r2 = x * x + y * y
        zz = z - zc
        ed = self.lv(0.0)
        # Pericardium and epicardial fat: an ellipsoid shell around the ventricles and atria.
        hx, hy, hz = 2.2 * ed["a"] + 20, 1.6 * ed["a"] + 12, ed["c"] * 1.45 + 35
        pcz = ed["zt"] + 5
        qp = ((x - 0.25 * ed["a"]) / hx) ** 2 + (y / hy) ** 2 + ((z - pcz) / hz) ** 2
        out[qp <= 1.0] = STRUCT_FAT
        out[(qp > 1.0) & (qp <= 1.08)] = STRUCT_PERICARDIUM
        # Atria (beyond the mitral/tricuspid planes), growing while the ventricles contract.
        sa = p.atrium_scale * (1 + 0.12 * s)
        la_c = 22 * sa
        la = (((x + 0.15 * a) / (20 * sa)) ** 2 + ((y - 4) / (18 * sa)) ** 2
              + ((z - (zt + 3 + la_c)) / la_c) ** 2)
        ra_c = 20 * sa
        rax = ed["a"] + ed["wall"] + 22 * p.rv_scale
        ra = (((x - rax) / (18 * sa)) ** 2 + ((y + 2) / (17 * sa)) ** 2 + ((z - (zt + 3 + ra_c)) / ra_c) ** 2)
        out[(la <= 1.25) | (ra <= 1.25)] = STRUCT_ATRIAL_WALL
        # Right ventricle: an ellipsoid beside and in front of the LV, minus the LV and septum.
        kr_rv = 1 - 0.22 * s
        rv_a, rv_b, rv_c = 17 * p.rv_scale * kr_rv, 30 * p.rv_scale * kr_rv, 0.85 * ed["c"] * (1 - 0.1 * s)
        rvx, rvy, rvz = ed["a"] + ed["wall"] + 6 * p.rv_scale, -0.45 * ed["a"], ed["zc"] + 0.25 * ed["c"]
        rvq = ((x - rvx) / rv_a) ** 2 + ((y - rvy) / rv_b) ** 2 + ((z - rvz) / rv_c) ** 2
        rv_in = (rvq <= 1.0) & (z <= zt + 2)
        rv_wall = (rvq <= (1 + 4.0 / rv_a) ** 2) & (z <= zt + 2)
        out[rv_wall] = STRUCT_RV_WALL
        # LV myocardium (outer ellipsoid, truncated at the annulus) and cavity.
        ao, co = a + w, c + wa
        outer = (r2 / (ao * ao) + (zz * zz) / (co * co) <= 1.0) & (z <= zt)
        out[outer] = STRUCT_MYO
        out[rv_in & ~outer] = STRUCT_RV
        cav = (r2 / (a * a) + (zz * zz) / (c * c) <= 1.0) & (z <= zt)
        out[cav] = STRUCT_LV
        out[la <= 1.0] = STRUCT_LA
        out[ra <= 1.0] = STRUCT_RA
        # Aortic root: a tube leaving the LV base anteriorly, toward the base and the right.
        d = np.array([0.25, -0.45, 0.86])
        d /= np.linalg.norm(d)
        o = np.array([0.25 * a, -0.55 * a, zt - 4])
        rel = pts - o
        tpar = rel @ d
        dist = np.linalg.norm(rel - tpar[:, None] * d, axis=1)
        tube = (tpar > 0) & (tpar < 70)
        out[tube & (dist <= 13.5) & (dist > 11) & (out != STRUCT_LV)] = STRUCT_MYO
        out[tube & (dist <= 11)] = STRUCT_AORTA
        # Mitral annulus ring, and the closed valve in systole.
        ring = (z > zt) & (z <= zt + 2.0) & (r2 <= (a + w) ** 2) & (r2 >= (0.8 * a) ** 2)
        if phase is not None and np.mod(phase, 1.0) < p.systole:
            ring |= (z > zt) & (z <= zt + 2.0) & (r2 <= (a + w) ** 2)
        out[ring] = STRUCT_VALVE
        return out

    def lv_mask(self, pts: np.ndarray, s: float) -> np.ndarray:
        """(N,) bool: points inside the LV cavity at state s."""
        g = self.lv(s)
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        zz = z - g["zc"]
        return ((x * x + y * y) / g["a"] ** 2 + zz * zz / g["c"] ** 2 <= 1.0) & (z <= g["zt"])


def tissue_labels(structures: np.ndarray) -> np.ndarray:
    """Structure ids -> tissue-table labels for the simulator."""
    return TISSUE_OF[structures]
