"""Image formation: ray marching through the property grids, speckle, PSF, TGC, log compression.

Per frame, every scanline is marched from the transducer face in S equal steps. A scanline is
R rays in each of E elevational layers: ray 0 of a layer is its centre line, the others are
jittered over the beam's lateral and elevational Gaussian profile (scrambled Sobol points, fixed by
the seed), so the ray average is a Monte-Carlo estimate of the beam's cross-section. Along a ray:

  reflection  R_s   = ((Z_s - Z_{s-1}) / (Z_s + Z_{s-1}))^2             intensity, per step
  transmission       log T_s = log(1 - R_s) - alpha_s f0 ds ln(10)/10       one way, intensity
  tau_s             = exp(sum_{s' <= s} log T_s')  = one-way intensity = two-way amplitude factor
  scatter echo      = tau_s * a_s               (a: scatterer amplitude of the tissue)
  specular echo     = sqrt(R_s) * tau_{s-1}      (amplitude reflection times the path before it)

Both are averaged over the rays of a layer. Speckle: the layer's scatter echo multiplies a complex
Gaussian scatterer texture fixed in volume space (speckle.py; masked where the tissue's scatterer
density is below 1), the specular echo adds coherently; the sum is convolved with the axial and
lateral PSF (probe.py), giving complex baseband (IQ) data whose magnitude is the envelope.
Layers are compounded incoherently (intensity average, Gaussian weights over the elevational
profile), as the Monte-Carlo ray tracer of the paper does; that is what lowers speckle variance in
high quality. Then time-gain compensation, log compression over a dynamic range, and scan
conversion (scan_conversion.py). The attenuation map is the ray- and layer-averaged tau: the
fraction of intensity that reaches each point, non-increasing along every beam.
All of it is batched over frames x layers x rays x scanlines x samples in torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from USGenLib.simulation.medium import AcousticMedium
from USGenLib.simulation.probe import Probe
from USGenLib.simulation.scan_conversion import ScanConverter
from USGenLib.simulation.speckle import ScattererTexture
from USGenLib.simulation.tissues import WATER

_LN10_10 = math.log(10.0) / 10.0
# Far beyond the paper's high quality (32 rays, 3 layers); cost and memory grow with their product.
MAX_RAYS, MAX_LAYERS = 1024, 64


@dataclass(frozen=True)
class Quality:
    """Rays per scanline and elevational layers (cost grows linearly with both).

    The paper's passes: low = 1 ray, 1 layer; high = 32 rays, 3 layers.
    """

    rays: int = 1
    layers: int = 1
    name: str = "low"

    def validate(self) -> None:
        if not (1 <= int(self.rays) <= MAX_RAYS and 1 <= int(self.layers) <= MAX_LAYERS):
            raise ValueError(f"rays must lie in 1..{MAX_RAYS} and layers in 1..{MAX_LAYERS}, got {self.rays} rays, "
                             f"{self.layers} layers")


QUALITIES = {"low": Quality(1, 1, "low"), "high": Quality(32, 3, "high")}


@dataclass(frozen=True)
class ImagingSettings:
    """Receive-chain settings shared by both quality levels.

    dynamic_range_db:  displayed dynamic range; envelope levels below it are black.
    gain_db:           added to 20 log10(envelope) before display; 0 dB is white. The default puts
                       liver speckle without attenuation about 20 dB below white.
    tgc_db_per_cm_mhz: time-gain compensation slope (one way), the average soft-tissue attenuation.
    reflection_gain:   weight of specular echoes relative to diffuse scattering.
    """

    dynamic_range_db: float = 60.0
    gain_db: float = -22.0
    tgc_db_per_cm_mhz: float = 0.5
    reflection_gain: float = 30.0


class BeamGeometry:
    """Where every ray of every layer samples, plus the PSF and TGC, for one probe and quality.

    probe, quality, n_samples (S), seed (ray jitter), tgc slope, volume_mm (smallest voxel size,
    for the specular scale), device. Ray r of layer e on line l at sample s sits at beam coordinates
    (line l + a_r sigma_lat(s) / line spacing(s), depth (s + 0.5) dz, elevation (c_e + b_r / sqrt(E))
    sigma_el(s)), with (a_r, b_r) = (0, 0) for ray 0 (the layer centre).

    Two ways to sample the properties at those points (same physics after it):
    - direct (few rays): ``points`` (S, E, R, L, 3) probe mm, trilinear grid_sample per ray sample.
    - slab (many rays):  ``slab_points`` (S, NE, L2, 3) probe mm: a beam-aligned slab per frame
      (NE elevation planes at k * 0.7 sigma_el, lateral positions every half scanline), sampled
      trilinearly once; each ray sample is then a bilinear interpolation within its depth row
      (``ray_grid`` (S, E*R*L, 2) normalised slab coordinates). The 3-D work then no longer grows
      with rays x layers; 2-D bilinear sampling of small per-depth planes is ~7x cheaper per point.
    centre_points: (S, E, L, 3) probe mm, the layer centres (scatterer texture, density).
    """

    SLAB_HALF_PLANES = 4
    SLAB_PLANE_SIGMA = 0.7

    def __init__(self, probe: Probe, quality: Quality, n_samples: int, seed: int = 0,
                 tgc_db_per_cm_mhz: float = 0.5, device: str | torch.device = "cpu", use_slab: bool | None = None):
        S, E, R = int(n_samples), int(quality.layers), int(quality.rays)
        L = int(probe.n_scanlines)
        self.sample_mm = probe.depth_mm / S
        depth = (np.arange(S) + 0.5) * self.sample_mm
        self.depth_mm = depth
        sig_lat, sig_el = probe.lateral_sigma_mm(depth), probe.elevation_sigma_mm(depth)
        sig_lines = sig_lat / probe.line_spacing_mm(depth)  # lateral sigma in scanlines, per depth
        centres = np.linspace(-1.0, 1.0, E) if E > 1 else np.zeros(1)
        w = np.exp(-0.5 * centres ** 2)
        self.layer_weights = torch.as_tensor(w / w.sum(), dtype=torch.float32, device=device)
        jitter = np.zeros((R, 2))
        if R > 1:
            sobol = torch.quasirandom.SobolEngine(2, scramble=True, seed=int(seed) + 101).draw(R - 1).double()
            jitter[1:] = torch.special.ndtri(sobol.clamp(1e-3, 1 - 1e-3)).numpy()
        lines = np.arange(L, dtype=np.float64)
        lat = jitter[:, 0, None] * sig_lines[None, :]                           # (R, S) in lines
        elev = centres[:, None] + jitter[None, :, 1] / math.sqrt(E)              # (E, R) in sigma_el
        self.shape = (E, R, L, S)
        self.use_slab = (R * E > 4) if use_slab is None else bool(use_slab)
        to_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
        self.centre_points = to_t(probe.beam_to_local(lines[None, None, :], depth[:, None, None],
                                                      centres[None, :, None] * sig_el[:, None, None]))  # (S,E,L,3)
        if self.use_slab:
            k = self.SLAB_HALF_PLANES
            planes = np.arange(-k, k + 1) * self.SLAB_PLANE_SIGMA                        # (NE,)
            margin = int(math.ceil(3.0 * float(sig_lines.max()))) + 1
            lat_pos = np.arange(-2 * margin, 2 * (L - 1 + margin) + 1) / 2.0              # (L2,) half lines
            self.slab_points = to_t(probe.beam_to_local(lat_pos[None, None, :], depth[:, None, None],
                                                        planes[None, :, None] * sig_el[:, None, None]))  # (S,NE,L2,3)
            gx = (lines[None, None, :, None] + lat[None, :, None, :] + margin) / (L - 1 + 2 * margin) * 2.0 - 1.0
            gy = np.clip(elev / (k * self.SLAB_PLANE_SIGMA), -1.0, 1.0)[:, :, None, None]
            gx, gy = np.broadcast_arrays(gx, gy)                                            # (E, R, L, S)
            grid = np.stack([gx, gy], -1).transpose(3, 0, 1, 2, 4).reshape(S, E * R * L, 2)
            self.ray_grid = to_t(grid)
            self.points = None
        else:
            pts = probe.beam_to_local(lines[None, None, None, :] + lat.T[:, None, :, None], depth[:, None, None, None],
                                      elev[None, :, :, None] * sig_el[:, None, None, None])  # (S, E, R, L, 3)
            self.points = to_t(pts)
            self.slab_points = self.ray_grid = None

        sa = probe.axial_sigma_mm / self.sample_mm
        self.axial_kernel = None
        if sa > 0.25:
            half = int(math.ceil(3 * sa))
            kern = np.exp(-0.5 * (np.arange(-half, half + 1) / sa) ** 2)
            self.axial_kernel = torch.as_tensor(kern / np.sqrt((kern ** 2).sum()), dtype=torch.float32, device=device)
        self.lateral_psf = None
        if sig_lines.max() > 0.25:
            idx = np.arange(L)
            m = np.exp(-0.5 * ((idx[None, :, None] - idx[None, None, :]) / np.maximum(sig_lines, 1e-3)[:, None, None]) ** 2)
            m /= np.sqrt((m ** 2).sum(-1, keepdims=True))
            self.lateral_psf = torch.as_tensor(m, dtype=torch.float32, device=device)
        tgc = 10.0 ** (2.0 * tgc_db_per_cm_mhz * probe.frequency_mhz * depth / 10.0 / 20.0)
        self.tgc = torch.as_tensor(tgc, dtype=torch.float32, device=device)


def _apply_pose(points: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """(N, 3) points and (B, 4, 4) affine matrices -> (B, N, 3)."""
    b = mats.shape[0]
    return torch.baddbmm(mats[:, None, :3, 3], points.reshape(1, -1, 3).expand(b, -1, -1),
                         mats[:, :3, :3].transpose(1, 2))


class FrameRenderer:
    """Renders B-mode, attenuation and label frames of one medium for batches of probe poses.

    medium:    AcousticMedium (property grids).
    probe:     Probe; quality: Quality; height, width: output size; n_samples: S per scanline.
    seed:      scatterer texture and ray jitter.
    settings:  ImagingSettings.
    max_points: rays x samples per batch chunk (memory bound).

    ``render(poses)``: (B, 4, 4) probe-to-LPS -> dict with "bmode" (B, H, W) uint8,
    "attenuation" (B, H, W) float32 in [0, 1], "labels" (B, H, W) uint8, and with
    ``envelope=True`` "envelope" (B, S, L) float32 (after TGC, before log compression).
    """

    def __init__(self, medium: AcousticMedium, probe: Probe, quality: Quality, height: int, width: int,
                 n_samples: int, seed: int = 0, settings: ImagingSettings = ImagingSettings(),
                 max_points: int = 1 << 22, use_slab: bool | None = None):
        self.medium, self.probe, self.quality, self.settings = medium, probe, quality, settings
        self.device = medium.device
        self.beam = BeamGeometry(probe, quality, n_samples, seed, settings.tgc_db_per_cm_mhz, self.device, use_slab)
        self.converter = ScanConverter(probe, n_samples, height, width, self.device)
        cell = max(2.0 * math.sqrt(2.0 * math.log(2.0)) * probe.axial_sigma_mm, self.beam.sample_mm)
        self.texture = ScattererTexture(seed, cell, self.device)
        self.k_att = probe.frequency_mhz * (self.beam.sample_mm / 10.0) * _LN10_10
        # An interface spreads over about one voxel of samples: scale per-sample specular amplitude
        # so a sharp interface peaks near sqrt(R) whatever the sampling.
        self.specular_scale = settings.reflection_gain * max(1.0, medium.min_spacing_mm / self.beam.sample_mm)
        self.max_points = int(max_points)
        self._pixels = torch.as_tensor(self.converter.pixel_local.reshape(-1, 3), dtype=torch.float32,
                                       device=self.device)

    @property
    def frames_per_chunk(self) -> int:
        return max(1, self.max_points // int(np.prod(self.beam.shape)))

    def render(self, poses: np.ndarray, envelope: bool = False) -> dict[str, torch.Tensor]:
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
        parts: list[dict[str, torch.Tensor]] = []
        n = self.frames_per_chunk
        for start in range(0, poses.shape[0], n):
            parts.append(self._render_chunk(poses[start:start + n], envelope))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _sample_rays(self, to_grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Properties at every ray sample, (3, B, S, E, R, L), and scatterer density at the layer
        centres, (B, S, E, L)."""
        E, R, L, S = self.beam.shape
        B = to_grid.shape[0]
        med = self.medium
        if not self.beam.use_slab:
            grid = _apply_pose(self.beam.points, to_grid).view(1, B * S, E * R * L, 1, 3)
            props = F.grid_sample(med.props, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            centre = grid.view(B * S, E, R, L, 3)[:, :, 0].reshape(1, B * S, E * L, 1, 3)
            dens = F.grid_sample(med.density, centre, mode="bilinear", padding_mode="zeros", align_corners=True)
            return props.view(3, B, S, E, R, L), dens.view(B, S, E, L)
        _, NE, L2, _ = self.beam.slab_points.shape
        grid = _apply_pose(self.beam.slab_points, to_grid).view(1, B * S, NE, L2, 3)
        slab = torch.cat([F.grid_sample(med.props, grid, mode="bilinear", padding_mode="zeros", align_corners=True),
                          F.grid_sample(med.density, grid, mode="bilinear", padding_mode="zeros", align_corners=True)],
                         1)[0].transpose(0, 1)  # (B*S, 4, NE, L2)
        rays = self.beam.ray_grid.view(1, S, 1, E * R * L, 2).expand(B, -1, -1, -1, -1).reshape(B * S, 1, E * R * L, 2)
        props = F.grid_sample(slab[:, :3], rays, mode="bilinear", padding_mode="border", align_corners=True)
        centre = rays.view(B * S, 1, E, R, L, 2)[:, :, :, 0].reshape(B * S, 1, E * L, 2)
        dens = F.grid_sample(slab[:, 3:], centre, mode="bilinear", padding_mode="border", align_corners=True)
        return props.view(B, S, 3, E, R, L).permute(2, 0, 1, 3, 4, 5), dens.view(B, S, E, L)

    @torch.no_grad()
    def _render_chunk(self, poses: np.ndarray, want_envelope: bool) -> dict[str, torch.Tensor]:
        B = poses.shape[0]
        E, R, L, S = self.beam.shape
        dev = self.device
        to_grid = torch.as_tensor(self.medium.lps_to_grid[None] @ poses, dtype=torch.float32, device=dev)
        to_lps = torch.as_tensor(poses, dtype=torch.float32, device=dev)

        # 1. March all rays (tensors (B, S, E, R, L); S is the marching axis).
        props, dens = self._sample_rays(to_grid)
        z = props[0] + WATER.impedance
        refl = torch.zeros_like(z)  # intensity reflection between sample s-1 and s (0 at the face)
        torch.sub(z[:, 1:], z[:, :-1], out=refl[:, 1:])
        refl[:, 1:].div_(z[:, 1:] + z[:, :-1]).square_()
        log_t = torch.log1p(refl.clamp(max=1.0 - 1e-6).neg_())
        cum = torch.cumsum(torch.mul(props[1], -self.k_att).add_(log_t), 1)  # log one-way intensity
        # exp() of values that underflow to denormals is ~70x slower on CPU; -60 is -260 dB, black anyway
        cum.clamp_(min=-60.0)
        tau = torch.exp(cum)
        scatter = torch.mul(props[2], tau).mean(3)                        # (B, S, E, L)
        specular = cum.sub_(log_t).clamp_(min=-60.0).exp_().mul_(refl.sqrt_()).mean(3)  # (B, S, E, L)
        atten = (tau.mean(3) * self.beam.layer_weights[:, None]).sum(2)    # (B, S, L)
        del props, z, refl, log_t, cum, tau

        # 2. Speckle at the layer centres: texture fixed in LPS space, masked by scatterer density.
        centres = _apply_pose(self.beam.centre_points, to_lps).view(B, S, E, L, 3)
        re, im = self.texture.sample(centres)
        if self.medium.sparse:
            scatter = scatter * (self.texture.uniform(centres) < dens)
        iq = torch.stack([scatter * re + self.specular_scale * specular, scatter * im])  # (2, B, S, E, L)

        # 3. Point-spread function: axial (along samples), then lateral (per depth, across lines).
        if self.beam.axial_kernel is not None:
            k = self.beam.axial_kernel
            x = iq.permute(0, 1, 3, 4, 2).reshape(-1, 1, S)
            x = F.conv1d(x, k.view(1, 1, -1), padding=k.numel() // 2)
            iq = x.view(2, B, E, L, S).permute(0, 1, 4, 2, 3)
        if self.beam.lateral_psf is not None:
            x = iq.permute(2, 4, 0, 1, 3).reshape(S, L, 2 * B * E)
            iq = torch.bmm(self.beam.lateral_psf, x).view(S, L, 2, B, E).permute(2, 3, 0, 4, 1)
        intensity = iq.square().sum(0)                                   # (B, S, E, L)
        env = (intensity * self.beam.layer_weights[:, None]).sum(2).sqrt_().mul_(self.beam.tgc[:, None])  # (B, S, L)

        # 4. Log compression and scan conversion.
        st = self.settings
        db = torch.log10(env + 1e-12).mul_(20.0).add_(st.gain_db)
        shown = db.add_(st.dynamic_range_db).div_(st.dynamic_range_db).clamp_(0.0, 1.0)
        img = self.converter.convert(torch.stack([shown, atten], 1))     # (B, 2, H, W)
        bmode = img[:, 0].mul(255.0).round_().to(torch.uint8)
        att = img[:, 1]
        fov = self.converter._fov
        for b in range(B):  # the paper's normalisation: divide by the 98th percentile inside the FoV
            p98 = torch.quantile(att[b][fov], 0.98)
            att[b] = (att[b] / p98.clamp_min(1e-12)).clamp_(max=1.0) if p98 > 0 else att[b]

        # 5. Labels of the imaging plane at every pixel (nearest voxel).
        pix = _apply_pose(self._pixels, to_grid).view(1, B, self.converter.height, self.converter.width, 3)
        labels = F.grid_sample(self.medium.labels, pix, mode="nearest", padding_mode="zeros",
                               align_corners=True)[0, 0]
        labels = (labels * fov).round_().to(torch.uint8)
        out = {"bmode": bmode, "attenuation": att.contiguous(), "labels": labels}
        if want_envelope:
            out["envelope"] = env
        return out

    def describe(self) -> dict:
        E, R, L, S = self.beam.shape
        return {"quality": self.quality.name, "rays_per_scanline": R, "elevational_layers": E, "scanlines": L,
                "samples_per_scanline": S, "ray_sampling": "slab" if self.beam.use_slab else "direct", "sample_mm": round(self.beam.sample_mm, 5),
                "pixel_mm": round(self.converter.pixel_mm, 5), "speckle_cell_mm": round(self.texture.cell_mm, 5),
                "settings": asdict(self.settings)}
