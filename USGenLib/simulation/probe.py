"""Transducer geometry and beam widths: convex and linear probes.

Probe coordinates (mm): origin at the centre of the transducer face (the skin contact point),
x = lateral (along the array), y = axial (depth, into the body), z = x cross y = elevation.
A pose is a 4x4 matrix mapping probe coordinates to the volume's physical space, LPS mm
(see pose.py for RAS and Slicer transform files).

Beam model (Gaussian optics; two-way amplitude point-spread function, standard deviations in mm):
- axial:      sigma = c * sigma_t / 2 with sigma_t = 2 sqrt(2 ln 2) / (2 pi B f0) for a Gaussian
              pulse whose -6 dB fractional bandwidth is B.
- lateral:    dynamic receive focusing at every depth z with F-number max(F_min, z / D_lat);
              the focal waist w0 = 2 lambda F / pi gives sigma = w0 / 2 = lambda F / pi.
- elevation:  a fixed lens focus z_e with aperture H: w0 = 2 lambda z_e / (pi H),
              Rayleigh range z_R = pi w0^2 / lambda, w(z) = w0 sqrt(1 + ((z - z_e) / z_R)^2),
              at most H / 2; sigma = w / 2.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np

SPEED_ASSUMED = 1540.0  # m/s, the scanner's beamforming assumption


@dataclass(frozen=True)
class Probe(ABC):
    """Common transducer parameters (see the module docstring for the beam model).

    depth_mm:            imaging depth from the face.
    frequency_mhz:       centre frequency f0.
    bandwidth:           fractional -6 dB bandwidth B (0.6 = 60 %).
    n_scanlines:         scanlines (receive lines) per frame, >= 2.
    lateral_aperture_mm: largest active receive aperture D_lat.
    f_number_min:        smallest receive F-number (near field).
    elevation_aperture_mm, elevation_focus_mm: elevation lens.
    """

    depth_mm: float = 150.0
    frequency_mhz: float = 3.5
    bandwidth: float = 0.6
    n_scanlines: int = 128
    lateral_aperture_mm: float = 20.0
    f_number_min: float = 1.5
    elevation_aperture_mm: float = 12.0
    elevation_focus_mm: float = 70.0

    kind = "probe"

    def validate(self) -> None:
        for name in ("depth_mm", "frequency_mhz", "bandwidth", "lateral_aperture_mm", "f_number_min",
                     "elevation_aperture_mm", "elevation_focus_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"probe {name} must be a positive number, got {value}")
        if int(self.n_scanlines) < 2:
            raise ValueError(f"a probe needs at least 2 scanlines, got {self.n_scanlines}")

    # ------------------------------------------------------------------ beam widths
    @property
    def wavelength_mm(self) -> float:
        return SPEED_ASSUMED / (self.frequency_mhz * 1e6) * 1e3

    @property
    def axial_sigma_mm(self) -> float:
        sigma_t = 2.0 * math.sqrt(2.0 * math.log(2.0)) / (2.0 * math.pi * self.bandwidth * self.frequency_mhz * 1e6)
        return SPEED_ASSUMED * sigma_t / 2.0 * 1e3

    def lateral_sigma_mm(self, depth: np.ndarray) -> np.ndarray:
        f_number = np.maximum(self.f_number_min, np.asarray(depth, dtype=np.float64) / self.lateral_aperture_mm)
        return self.wavelength_mm * f_number / math.pi

    def elevation_sigma_mm(self, depth: np.ndarray) -> np.ndarray:
        lam = self.wavelength_mm
        w0 = 2.0 * lam * self.elevation_focus_mm / (math.pi * self.elevation_aperture_mm)
        z_r = math.pi * w0 ** 2 / lam
        w = w0 * np.sqrt(1.0 + ((np.asarray(depth, dtype=np.float64) - self.elevation_focus_mm) / z_r) ** 2)
        return np.minimum(w, self.elevation_aperture_mm / 2.0) / 2.0

    @property
    def slice_thickness_mm(self) -> float:
        """Elevational full width at half maximum at the elevation focus."""
        return float(2.0 * math.sqrt(2.0 * math.log(2.0)) * self.elevation_sigma_mm(self.elevation_focus_mm))

    # --------------------------------------------------------------- geometry API
    @abstractmethod
    def line_spacing_mm(self, depth: np.ndarray) -> np.ndarray:
        """Distance between neighbouring scanlines at each depth along the lines (mm)."""

    @abstractmethod
    def fov_bounds(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the field of view in probe coordinates (mm)."""

    @abstractmethod
    def to_beam(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """In-plane probe coordinates -> (depth along the line mm, fractional line index, inside FoV)."""

    @abstractmethod
    def beam_to_local(self, line: np.ndarray, depth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
        """Beam coordinates (fractional line index, depth along the line mm, elevation mm) -> probe
        coordinates (..., 3) mm. Arguments broadcast."""

    def to_dict(self) -> dict:
        d = {"kind": self.kind, **asdict(self)}
        d.update(wavelength_mm=round(self.wavelength_mm, 4), axial_sigma_mm=round(self.axial_sigma_mm, 4),
                 slice_thickness_mm=round(self.slice_thickness_mm, 3))
        return d


@dataclass(frozen=True)
class ConvexProbe(Probe):
    """Curved array: face radius and opening angle (the paper's convex probe spans 70 degrees)."""

    radius_mm: float = 60.0
    opening_deg: float = 70.0

    kind = "convex"

    def validate(self) -> None:
        super().validate()
        if not (self.radius_mm > 0 and 0 < self.opening_deg < 180):
            raise ValueError(f"convex probe needs radius > 0 and 0 < opening < 180 degrees, "
                             f"got {self.radius_mm} mm, {self.opening_deg} deg")

    @property
    def half_angle(self) -> float:
        return math.radians(self.opening_deg) / 2.0

    def line_spacing_mm(self, depth):
        dtheta = 2.0 * self.half_angle / (int(self.n_scanlines) - 1)
        return (self.radius_mm + np.asarray(depth, dtype=np.float64)) * dtheta

    def fov_bounds(self):
        h, r, d = self.half_angle, self.radius_mm, self.depth_mm
        x_max = (r + d) * math.sin(min(h, math.pi / 2))
        return -x_max, x_max, r * math.cos(h) - r, d

    def beam_to_local(self, line, depth, elevation):
        line, depth, elevation = np.broadcast_arrays(np.asarray(line, dtype=np.float64),
                                                     np.asarray(depth, dtype=np.float64),
                                                     np.asarray(elevation, dtype=np.float64))
        theta = -self.half_angle + line * (2.0 * self.half_angle / (int(self.n_scanlines) - 1))
        rho = self.radius_mm + depth
        return np.stack([rho * np.sin(theta), rho * np.cos(theta) - self.radius_mm, elevation], -1)

    def to_beam(self, x, y):
        vx, vy = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64) + self.radius_mm
        depth = np.hypot(vx, vy) - self.radius_mm
        theta = np.arctan2(vx, vy)
        line = (theta + self.half_angle) / (2.0 * self.half_angle) * (int(self.n_scanlines) - 1)
        inside = (depth >= 0) & (depth <= self.depth_mm) & (np.abs(theta) <= self.half_angle)
        return depth, line, inside


@dataclass(frozen=True)
class LinearProbe(Probe):
    """Linear array: parallel scanlines across the face width."""

    depth_mm: float = 50.0
    frequency_mhz: float = 7.5
    lateral_aperture_mm: float = 12.0
    elevation_aperture_mm: float = 5.0
    elevation_focus_mm: float = 20.0
    width_mm: float = 38.0

    kind = "linear"

    def validate(self) -> None:
        super().validate()
        if not self.width_mm > 0:
            raise ValueError(f"linear probe width must be positive, got {self.width_mm}")

    def line_spacing_mm(self, depth):
        return np.full(np.shape(depth), self.width_mm / (int(self.n_scanlines) - 1))

    def fov_bounds(self):
        return -self.width_mm / 2.0, self.width_mm / 2.0, 0.0, self.depth_mm

    def beam_to_local(self, line, depth, elevation):
        line, depth, elevation = np.broadcast_arrays(np.asarray(line, dtype=np.float64),
                                                     np.asarray(depth, dtype=np.float64),
                                                     np.asarray(elevation, dtype=np.float64))
        x = -self.width_mm / 2.0 + line * (self.width_mm / (int(self.n_scanlines) - 1))
        return np.stack([x, depth, elevation], -1)

    def to_beam(self, x, y):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        line = (x + self.width_mm / 2.0) / self.width_mm * (int(self.n_scanlines) - 1)
        inside = (y >= 0) & (y <= self.depth_mm) & (np.abs(x) <= self.width_mm / 2.0)
        return y, line, inside


PROBES = {"convex": ConvexProbe, "linear": LinearProbe}


def make_probe(kind: str = "convex", **overrides) -> Probe:
    """A probe of ``kind`` ("convex" or "linear") with defaults, ``overrides`` replacing fields
    (None values are ignored)."""
    if kind not in PROBES:
        raise ValueError(f"unknown probe '{kind}' (choose {', '.join(PROBES)})")
    probe = PROBES[kind](**{k: v for k, v in overrides.items() if v is not None})
    probe.validate()
    return probe
