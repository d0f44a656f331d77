"""Video files through FFmpeg (imageio-ffmpeg ships the binary): read with imageio's plugin,
written by piping frames into ffmpeg ourselves.

AVI is written losslessly (FFV1), so it round-trips exactly and code written for EchoNet-Dynamic
(112x112 AVI) reads it. MP4 (H.264, yuv420p) is a lossy preview for people.
Videos carry no physical calibration: read spacing is 1 mm and marked so in ``meta``.

The writer starts ffmpeg itself (not through imageio) so that ffmpeg dies with the job: the kernel
kills it when USGen dies (``die_with_parent``), and an interrupted write kills it at once, where
imageio's writer puts ffmpeg in a process group of its own and lets it finish the file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from imageio_ffmpeg import get_ffmpeg_exe

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path
from USGenLib.lifetime import die_with_parent
from USGenLib.types import Cine

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm")


def is_grey_rgb(frames: np.ndarray, tolerance: int = 3) -> bool:
    """Whether RGB frames show a grey picture: channels equal up to lossy-codec chroma noise
    (within ``tolerance`` levels on 99.9 % of pixels, never more than 16 apart)."""
    f = frames[::max(1, frames.shape[0] // 16)].astype(np.int16)
    spread = f.max(axis=-1) - f.min(axis=-1)
    return bool(np.mean(spread <= tolerance) >= 0.999 and spread.max() <= 16)


def read_video(path: str | Path) -> Cine:
    path = Path(path)
    if not path.exists():
        raise UsgenInputError(path, "file does not exist")
    try:
        frames = iio.imread(path, plugin="FFMPEG")
        fps = float(iio.immeta(path, plugin="FFMPEG").get("fps") or 0.0)
    except Exception as err:
        raise UsgenInputError(path, f"not a readable video ({str(err).splitlines()[0][:160]})") from err
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise UsgenInputError(path, "video holds no frames")
    if is_grey_rgb(frames):
        frames = np.ascontiguousarray(frames[..., 0]) if np.array_equal(frames[..., 0], frames[..., 2]) \
            else np.rint(frames.mean(axis=-1)).astype(np.uint8)  # grey video stored as RGB (EchoNet AVIs)
    times_from = "video frame rate"
    if fps <= 0:
        fps, times_from = 30.0, "none in file: 30 frames/s assumed"
    return Cine(frames=frames, spacing=(1.0, 1.0, 1.0), times=np.arange(frames.shape[0]) / fps,
                meta={"source": str(path), "format": "video", "spacing_from": "none in file: 1 mm assumed",
                      "times_from": times_from})


LABEL_MAX = 31  # uint8 data whose largest value is this small is a mask or label map


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Display pixels: uint8 images pass; uint8 masks and label maps (max <= 31) are spread over
    0..255; other types are windowed to their own 0.5-99.5 % range."""
    if frames.dtype == np.uint8:
        top = int(frames.max()) if frames.size else 0
        if 0 < top <= LABEL_MAX:
            return (np.asarray(frames) * (255 // top)).astype(np.uint8)
        return np.asarray(frames)
    arr = np.asarray(frames, dtype=np.float32)
    lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((arr - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _encode(frames: np.ndarray, path: Path, fps: float, output_args: list[str]) -> None:
    """Pipe (T, H, W) grey or (T, H, W, 3) RGB uint8 frames into ffmpeg, one frame at a time."""
    h, w = frames.shape[1:3]
    command = [get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24" if frames.ndim == 4 else "gray", "-s", f"{w}x{h}", "-r", repr(float(fps)),
               "-i", "pipe:0", "-an", *output_args, str(path)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent if os.name == "posix" else None)
    try:
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            proc.stdin.close()
        except BrokenPipeError:  # ffmpeg stopped early; its message says why
            pass
        message = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    except BaseException:  # interrupted: the temporary file goes, so ffmpeg need not finish it
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise OSError(f"ffmpeg failed ({(message.splitlines() or ['exit code ' + str(code)])[-1][:200]})")


def write_video(cine: Cine, path: str | Path) -> Path:
    """AVI: lossless FFV1 (grey or RGB). MP4: H.264 preview, padded to even width and height."""
    path = Path(path)
    frames = to_uint8(cine.frames)
    suffix = path.suffix.lower()
    if suffix == ".avi":
        output_args = ["-c:v", "ffv1", "-pix_fmt", "bgr0" if cine.is_rgb else "gray"]
    elif suffix == ".mp4":
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w)) + ((0, 0),) * (frames.ndim - 3))
        output_args = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]
    else:
        raise UsgenInputError(path, f"unknown video type '{suffix}' (use .avi or .mp4)")
    with atomic_path(path) as tmp:
        _encode(frames, tmp, cine.fps or 1.0, output_args)
    return path
