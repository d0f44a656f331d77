"""What a file holds, in the figures a user checks first (``usgen info``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from USGenLib.cfd.detect import color_flow_fraction, FLOW_FRACTION
from USGenLib.io import read_any, suffix_of
from USGenLib.io.frames import sample_frames
from USGenLib.io.video import VIDEO_SUFFIXES, read_video
from USGenLib.limits import check_regular
from USGenLib.types import Cine

SAMPLE_FRAMES = 16  # frames decoded for colour-flow detection; the rest of a clip is never decoded


def describe(path: str | Path) -> dict:
    """A JSON-ready summary. Cines: frames, height, width, channels, colour model, spacing (mm),
    frame rate, duration, colour-flow presence. Volumes: size, spacing, value range.
    A cine is read from its header plus a sample of frames: a video's frame count is then the
    container's duration x frame rate ("frames_from"), and nothing decodes the whole clip."""
    path = Path(path)
    if suffix_of(path) in VIDEO_SUFFIXES:
        data = read_video(check_regular(path), lazy=True, scan=False)
    else:
        data = read_any(path, lazy=True)
    if isinstance(data, Cine):
        fraction = color_flow_fraction(sample_frames(data.frames, SAMPLE_FRAMES)) if data.is_rgb else 0.0
        return {
            "path": str(path),
            "type": "cine",
            "modality": data.meta.get("modality", ""),
            "frames": data.num_frames,
            "height": data.height,
            "width": data.width,
            "channels": data.channels,
            "color_model": data.meta.get("photometric") or ("RGB" if data.is_rgb else "MONOCHROME2"),
            "dtype": str(data.frames.dtype),
            "spacing_mm": [round(float(v), 6) for v in data.spacing],
            "spacing_from": data.meta.get("spacing_from", "file"),
            "fps": None if data.fps is None else round(data.fps, 4),
            "duration_s": round(float(data.times[-1] - data.times[0]), 6),
            "times_from": data.meta.get("times_from", "file"),
            "frames_from": data.meta.get("frames_from", "file"),
            "origin_mm": [round(float(v), 6) for v in data.origin],
            "has_color_flow": bool(fraction >= FLOW_FRACTION),
            "color_flow_fraction": round(fraction, 5),
            "transforms": sorted(data.meta.get("transforms") or {}),
        }
    arr = data.array
    return {
        "path": str(path),
        "type": "volume",
        "kind": data.kind,
        "size_ijk": list(data.shape_ijk),
        "dtype": str(arr.dtype),
        "spacing_mm": [round(float(v), 6) for v in data.spacing],
        "origin_mm": [round(float(v), 6) for v in data.origin],
        "direction": [round(float(v), 6) for v in data.direction.reshape(-1)],
        "min": float(np.min(arr)),
        "max": float(np.max(arr)),
    }


def format_info(info: dict) -> str:
    """Human-readable lines for ``usgen info`` without --json."""
    if info["type"] == "cine":
        sx, sy, _ = info["spacing_mm"]
        fps = "-" if info["fps"] is None else f"{info['fps']:.2f} frames/s"
        lines = [
            f"file:        {info['path']}",
            f"modality:    {info['modality'] or '-'}",
            f"frames:      {info['frames']}  ({info['duration_s']:.3f} s; times from {info['times_from']})",
            f"size:        {info['width']} x {info['height']} pixels, {info['channels']} channel(s) ({info['color_model']}, {info['dtype']})",
            f"spacing:     {sx:.4f} x {sy:.4f} mm  (from {info['spacing_from']})",
            f"frame rate:  {fps}",
            f"colour flow: {'yes' if info['has_color_flow'] else 'no'} ({100 * info['color_flow_fraction']:.2f} % of pixels)",
        ]
        if info["transforms"]:
            lines.append(f"tracking:    {', '.join(info['transforms'])} (one 4x4 per frame)")
    else:
        lines = [
            f"file:     {info['path']}",
            f"volume:   {info['kind']}, {' x '.join(str(v) for v in info['size_ijk'])} voxels ({info['dtype']})",
            f"spacing:  {' x '.join(f'{v:.4f}' for v in info['spacing_mm'])} mm",
            f"origin:   {', '.join(f'{v:.2f}' for v in info['origin_mm'])} mm (LPS)",
            f"range:    {info['min']:g} .. {info['max']:g}",
        ]
    return "\n".join(lines)
