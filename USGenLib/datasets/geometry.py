"""Scan-converted image geometry in beam coordinates, for the cheap CFD background and colour boxes.

A ``BeamGrid`` gives, for every pixel of an (H, W) display image, its depth along the beam, its
lateral beam coordinate and the beam direction, for a linear array (parallel beams) or a sector
(phased or convex array: beams fan out from a virtual apex). Colour boxes are rectangles in these
beam coordinates, drawn as rectangles, parallelograms (steered linear) or annular sectors.
Nothing here knows about tissue: the simulation engine (USGenLib.simulation) owns that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class BeamGrid:
    """Beam coordinates of each pixel of an (H, W) image, x to the right, y down.

    kind:     "linear" or "sector".
    depth:    (H, W) float32 mm from the probe face along the beam.
    lateral:  (H, W) float32, mm across the aperture (linear) or beam angle in radians (sector).
    ux, uy:   (H, W) float32 unit beam direction (pointing away from the probe) in image axes.
    fov:      (H, W) bool, pixels inside the imaged field of view.
    spacing:  mm per pixel (isotropic).
    max_depth, half_width: FoV extent: depth in mm, and half aperture in mm (linear) or
              half opening angle in radians (sector).
    apex:     (x, y) pixel position of the virtual apex (sector) or the aperture centre (linear).
    radius:   mm, convex radius (0 for a phased array's point apex and for linear arrays).
    """

    kind: str
    depth: np.ndarray
    lateral: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    fov: np.ndarray
    spacing: float
    max_depth: float
    half_width: float
    apex: tuple[float, float]
    radius: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.fov.shape

    @classmethod
    def linear(cls, shape: tuple[int, int], depth_mm: float, width_mm: float,
               top: int = 0) -> "BeamGrid":
        """A linear array whose aperture (``width_mm``) is centred at the top of the image,
        ``top`` pixels down, imaging to ``depth_mm``. The pixel size fits the depth in the rows left."""
        h, w = shape
        spacing = depth_mm / max(h - top, 1)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx = (w - 1) / 2.0
        depth = (yy - top) * spacing
        lateral = (xx - cx) * spacing
        fov = (depth >= 0) & (depth <= depth_mm) & (np.abs(lateral) <= width_mm / 2)
        zeros = np.zeros_like(depth)
        return cls("linear", depth.astype(np.float32), lateral.astype(np.float32), zeros,
                   np.ones_like(depth), fov, float(spacing), float(depth_mm), float(width_mm / 2),
                   (float(cx), float(top)))

    @classmethod
    def sector(cls, shape: tuple[int, int], depth_mm: float, angle_deg: float, radius_mm: float = 0.0,
               top: int = 0) -> "BeamGrid":
        """A sector (phased array, ``radius_mm`` = 0) or convex array of ``radius_mm``, opening
        ``angle_deg`` in total, its shallowest point ``top`` pixels below the image top, fitted so the
        whole fan (depth ``depth_mm``) fits the image height and width."""
        h, w = shape
        half = np.deg2rad(angle_deg) / 2
        # Fan height in mm from the apex: radius + depth; width: 2 (radius + depth) sin(half).
        span_h = (radius_mm + depth_mm) - radius_mm * np.cos(half)
        span_w = 2 * (radius_mm + depth_mm) * np.sin(half)
        spacing = max(span_h / max(h - top - 1, 1), span_w / max(w - 2, 1))
        cx = (w - 1) / 2.0
        apex_y = top - radius_mm / spacing
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dx = (xx - cx) * spacing
        dy = (yy - apex_y) * spacing
        dist = np.hypot(dx, dy)
        theta = np.arctan2(dx, dy)
        depth = dist - radius_mm
        fov = (depth >= 0) & (depth <= depth_mm) & (np.abs(theta) <= half) & (dy > 0)
        safe = np.maximum(dist, 1e-6)
        return cls("sector", depth.astype(np.float32), theta.astype(np.float32),
                   (dx / safe).astype(np.float32), (dy / safe).astype(np.float32), fov, float(spacing),
                   float(depth_mm), float(half), (float(cx), float(apex_y)), float(radius_mm))

    def to_pixel(self, depth_mm, lateral) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) pixel positions of beam coordinates (depth mm, lateral mm or rad)."""
        depth_mm = np.asarray(depth_mm, dtype=np.float64)
        lateral = np.asarray(lateral, dtype=np.float64)
        ax, ay = self.apex
        if self.kind == "linear":
            return ax + lateral / self.spacing, ay + depth_mm / self.spacing
        r = (depth_mm + self.radius) / self.spacing
        return ax + r * np.sin(lateral), ay + r * np.cos(lateral)


@dataclass
class ColorBox:
    """A colour-flow region of interest: a rectangle in beam coordinates.

    depth0, depth1: mm along the beam; lateral0, lateral1: mm (linear) or radians (sector);
    steer: linear-array steering angle in radians (the box becomes a parallelogram and the
    Doppler beams tilt by this angle); 0 for sectors.
    """

    depth0: float
    depth1: float
    lateral0: float
    lateral1: float
    steer: float = 0.0

    def mask(self, grid: BeamGrid) -> np.ndarray:
        """(H, W) bool: pixels inside the box and the field of view."""
        lat = grid.lateral
        if grid.kind == "linear" and self.steer:
            lat = lat - grid.depth * np.tan(self.steer)
        return (grid.fov & (grid.depth >= self.depth0) & (grid.depth <= self.depth1)
                & (lat >= self.lateral0) & (lat <= self.lateral1))

    def outline(self, grid: BeamGrid, thickness: int = 1) -> np.ndarray:
        """(H, W) bool: the box's border, ``thickness`` pixels wide, inside the box."""
        inside = self.mask(grid)
        return inside & ~ndimage.binary_erosion(inside, iterations=thickness, border_value=0)

    def beam_direction(self, grid: BeamGrid) -> tuple[np.ndarray, np.ndarray]:
        """(ux, uy), each (H, W): the Doppler beam direction (away from the probe) in the box."""
        if grid.kind == "linear" and self.steer:
            return (np.full(grid.shape, np.sin(self.steer), np.float32),
                    np.full(grid.shape, np.cos(self.steer), np.float32))
        return grid.ux, grid.uy
