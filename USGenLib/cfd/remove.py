"""``usgen cfd remove``: colour-flow cine -> B-mode cine + CFD mask, in the input's own geometry.

Per temporal window: find the colour (cfd.detect), and for each display (dual displays are split)
crop the colour's bounding box plus context, scale the display to the network's size, run the
networks, scale back and write the estimate under the mask only. Every pixel outside the mask is the
input's own; windows overlap and are cross-faded, so memory depends on the window, not the clip.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from USGenLib.cfd.detect import FLOW_FRACTION, color_flow_fraction, removal_mask
from USGenLib.cfd.network_grid import (blend_weights, crops_for, display_regions, from_network, temporal_windows,
                                 to_network)
from USGenLib.cfd.networks import CFDConfig, CFDRemover, MaskNet
from USGenLib.errors import UsgenInputError
from USGenLib.io.luma import luma
from USGenLib.progress import progress
from USGenLib.types import Cine

IN_MEMORY_LIMIT = 256 << 20   # larger outputs go to a memory-mapped file in the job's temporary folder


@dataclass
class Remover:
    """Loaded networks ready to run: the model, its config, where it came from and the device."""

    model: CFDRemover
    config: CFDConfig
    weights: Path
    device: torch.device
    stage: str = "full"
    sha256: str = ""
    mask_model: MaskNet | None = None
    mask_weights: Path | None = None

    def describe(self) -> dict:
        return {"weights": self.weights.name, "weights_sha256": self.sha256, "config": self.config.name,
                "stage": self.stage, "device": str(self.device),
                "mask": f"colour rule + learned ({self.mask_weights.name})" if self.mask_model else "colour rule"}


def load_remover(weights: str | Path | None = None, device: str = "auto", stage: str = "full",
                 mask_weights: str | Path | None = None) -> Remover:
    """The bundled default weights unless ``weights`` names a file, and the learned mask (bundled unless
    ``mask_weights`` names a file; the colour rule alone when neither exists); one-line errors for bad files."""
    from USGenLib.train.devices import resolve_device
    from USGenLib.train.weights import bundled_weights, load_network, load_state_into, load_weights

    model, config_dict, path = load_network(weights, "cfd", lambda d: CFDRemover(CFDConfig.from_dict(d)),
                                            ("cfd", "default"), "CFD")
    config = CFDConfig.from_dict(config_dict)
    dev = resolve_device(device)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    mask_path = Path(mask_weights) if mask_weights else bundled_weights("cfd", "mask")
    mask_model = None
    if mask_weights or mask_path.is_file():
        mask_state, mask_config = load_weights(mask_path, "cfd_mask")
        mask_model = MaskNet(tuple(mask_config.get("mask_channels", CFDConfig.mask_channels)))
        load_state_into(mask_model, mask_state, mask_path)
        mask_model = mask_model.to(dev).eval()
    return Remover(model.to(dev).eval(), config, path, dev, stage, digest, mask_model,
                   mask_path if mask_model else None)


def _output_array(shape: tuple[int, ...], scratch: Path | None) -> np.ndarray:
    """uint8 zeros; memory-mapped in the job's ``scratch`` folder when large."""
    if scratch is None or int(np.prod(shape)) <= IN_MEMORY_LIMIT:
        return np.zeros(shape, np.uint8)
    return np.lib.format.open_memmap(scratch / f"{len(shape)}d.npy", mode="w+", dtype=np.uint8, shape=shape)


@torch.inference_mode()
def remove_color_flow(cine: Cine, remover: Remover, keep_color_text: bool = False, seed: int = 0,
                      scratch: Path | None = None, masks: np.ndarray | None = None) -> tuple[Cine, Cine, dict]:
    """(B-mode cine, CFD-mask label cine, report) with the input's geometry and frame times.

    The B-mode cine is grey (T, H, W) uint8, or RGB with colour kept outside the mask when
    ``keep_color_text``. A grey input comes back unchanged with an empty mask. ``masks`` (T, H, W)
    bool replaces the detected mask (evaluation with the ground truth).
    """
    t0 = time.perf_counter()
    cfg = remover.config
    T, H, W = cine.num_frames, cine.height, cine.width
    report = {"frames": T, "height": H, "width": W, **remover.describe()}
    mask_out = _output_array((T, H, W), scratch)
    unchanged = dict(mask_coverage=[0.0] * T, mean_coverage=0.0, regions=[[0, W]])
    if not cine.is_rgb:
        report.update(unchanged, note="grey input: no colour flow; the B-mode output equals the input",
                      seconds=round(time.perf_counter() - t0, 3))
        return cine, cine.with_frames(mask_out), report

    out = _output_array((T, H, W, 3) if keep_color_text else (T, H, W), scratch)
    flow = color_flow_fraction(cine.frames, max_frames=16)
    if masks is None and flow < FLOW_FRACTION:
        # Coloured text, markers or an ECG trace alone are not colour flow: nothing is inpainted.
        for t in range(T):
            rgb = np.asarray(cine.frames[t])
            out[t] = rgb if keep_color_text else luma(rgb[None])[0]
        report.update(unchanged, note=f"no colour flow found ({100 * flow:.2f} % colour-flow pixels, below the "
                      f"{100 * FLOW_FRACTION:.1f} % of `usgen info`): the output is the input's grey image",
                      seconds=round(time.perf_counter() - t0, 3))
        return cine.with_frames(out), cine.with_frames(mask_out), report
    sample_idx = np.linspace(0, T - 1, min(T, 16)).astype(int)
    regions = display_regions(luma(np.asarray(cine.frames[sample_idx])))
    windows = temporal_windows(T, cfg.window, cfg.overlap)
    coverage = np.zeros(T)
    pending: dict[int, tuple[np.ndarray, float]] = {}  # frame -> (weighted fill sum, weight): overlaps only
    gen = torch.Generator().manual_seed(seed)
    with progress(T, "remove colour", unit="frame") as bar:
        for start, stop in windows:
            rgb = np.asarray(cine.frames[start:stop])
            mask = detect_mask(rgb, remover) if masks is None else np.asarray(masks[start:stop], bool)
            grey = luma(rgb)
            fill = np.zeros(grey.shape, np.float32)
            for region in regions:
                scale = cfg.size / max(H, region[1] - region[0])
                for crop in crops_for(mask, region, scale, cfg.margin):
                    y = _run(remover, to_network(grey, mask, crop).to(remover.device), gen)
                    fill[:, crop.y0:crop.y1, crop.x0:crop.x1] = from_network(y, crop)
            weights = blend_weights(start, stop, T, cfg.overlap)
            done_until = stop if stop == T else stop - cfg.overlap
            finished = 0
            for i, t in enumerate(range(start, stop)):
                acc, wsum = pending.pop(t, (0.0, 0.0))
                acc, wsum = acc + weights[i] * fill[i], wsum + weights[i]
                if t < done_until:
                    _finish_frame(t, rgb[i], grey[i], mask[i], acc / wsum, out, mask_out, keep_color_text)
                    coverage[t] = mask[i].mean()
                    finished += 1
                else:
                    pending[t] = (acc, wsum)
            bar.update(finished)
    seconds = time.perf_counter() - t0
    report.update(regions=[list(r) for r in regions], windows=len(windows),
                  mask_coverage=[round(float(c), 5) for c in coverage], mean_coverage=round(float(coverage.mean()), 5),
                  seconds=round(seconds, 3), ms_per_frame=round(1000 * seconds / T, 2))
    bmode = cine.with_frames(out)
    return bmode, cine.with_frames(mask_out), report


LEARNED_MARGIN = 32  # pixels around each colour area's box where the learned mask may add pixels


def detect_mask(rgb: np.ndarray, remover: Remover) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W) bool: the colour rule's mask, plus what the learned mask finds
    (box outlines, grey colour-mode text) inside the bounding boxes of the colour areas grown by
    LEARNED_MARGIN pixels. Text and markers elsewhere are never touched."""
    rule = removal_mask(rgb)
    if remover.mask_model is None or not rule.any():
        return rule
    mask = rule.copy()
    h, w = rule.shape[1:]
    for crop in crops_for(rule, (0, w), 1.0, LEARNED_MARGIN):
        rgb_t = torch.from_numpy(np.ascontiguousarray(rgb[:, crop.y0:crop.y1, crop.x0:crop.x1])).float() / 255.0
        rule_t = torch.from_numpy(np.ascontiguousarray(rule[:, crop.y0:crop.y1, crop.x0:crop.x1])).float()
        x = torch.cat([rgb_t.permute(0, 3, 1, 2), rule_t[:, None]], 1)
        ph, pw = -(-x.shape[2] // 4) * 4, -(-x.shape[3] // 4) * 4
        x = F.pad(x, (0, pw - x.shape[3], 0, ph - x.shape[2]), mode="replicate")
        learned = remover.mask_model(x.to(remover.device))[:, 0, : rgb_t.shape[1], : rgb_t.shape[2]] > 0
        mask[:, crop.y0:crop.y1, crop.x0:crop.x1] |= learned.cpu().numpy()
    return mask


def _run(remover: Remover, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The networks on (1, 2, T, h, w). A still image or a clip shorter than the training clips is
    repeated in time first: alone, a frame's temporal convolutions would see only zero padding,
    which training never shows them (a single frame came back black)."""
    n, need = x.shape[2], remover.config.clip_frames
    if n < need:
        x = x.repeat(1, 1, -(-need // n), 1, 1)[:, :, :need]
    return remover.model(x, stage=remover.stage, generator=gen)[:, :, :n]


def _finish_frame(t, rgb, grey, mask, fill, out, mask_out, keep_color_text) -> None:
    """Frame ``t`` of the outputs: the input outside the mask, the network's fill inside it."""
    value = np.rint(fill[mask]).astype(np.uint8)
    if keep_color_text:
        frame = rgb.copy()
        frame[mask] = value[:, None]
    else:
        frame = grey.copy()
        frame[mask] = value
    out[t] = frame
    mask_out[t] = mask


def remove_to_folder(input_path: str | Path, out_dir: str | Path, remover: Remover, keep_color_text: bool = False,
                     seed: int = 0) -> list[Path]:
    """Read, remove, and write OUT_DIR/bmode.seq.nrrd, cfd_mask.seq.nrrd and report.json as one whole
    (a temporary folder renamed into place)."""
    from USGenLib.io import read_cine, write_seq_nrrd
    from USGenLib.io.atomic import atomic_folder

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsgenInputError(out_dir, "exists and is not a folder")
    cine = read_cine(input_path, lazy=True)  # frames decoded window by window
    with atomic_folder(out_dir) as tmp:
        bmode, mask, report = remove_color_flow(cine, remover, keep_color_text, seed, scratch=tmp)
        report["input"] = Path(input_path).name
        write_seq_nrrd(bmode, tmp / "bmode.seq.nrrd")
        write_seq_nrrd(mask, tmp / "cfd_mask.seq.nrrd", labels=True)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        del bmode, mask
        for scratch_file in tmp.glob("*.npy"):  # memory-mapped outputs of long clips
            scratch_file.unlink()
    return [out_dir / "bmode.seq.nrrd", out_dir / "cfd_mask.seq.nrrd", out_dir / "report.json"]
