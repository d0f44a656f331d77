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
from typing import Iterable, Iterator

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
from imageio_ffmpeg import get_ffmpeg_exe

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path
from USGenLib.io.frames import FrameSource, sample_frames
from USGenLib.lifetime import die_with_parent
from USGenLib.limits import check_regular
from USGenLib.types import Cine

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm")


def is_grey_rgb(frames: np.ndarray, tolerance: int = 3) -> bool:
    """Whether RGB frames show a grey picture: channels equal up to lossy-codec chroma noise
    (within ``tolerance`` levels on 99.9 % of pixels, never more than 16 apart)."""
    f = sample_frames(frames, 16).astype(np.int16)
    spread = f.max(axis=-1) - f.min(axis=-1)
    return bool(np.mean(spread <= tolerance) >= 0.999 and spread.max() <= 16)


def _first_line(err: Exception) -> str:
    """FFmpeg errors carry the whole command line and log; the user needs its first line."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:160]


def scan_video(path: Path, decode: bool = True) -> tuple[int, str | None]:
    """Count a video's frames with ffmpeg, writing nothing: (frames, ffmpeg's first error line or None).

    decode=True decodes every frame and stops at the first damaged one (-xerror): exact, and how a
    truncated or corrupt video is told from a short one (imageio's reader just stops early, and
    container frame counts are estimates). decode=False only counts the stored packets (-c copy,
    no decoding: fast on any length; `usgen info`). Memory stays at a frame either way."""
    cmd = [get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-stats"] + (["-xerror"] if decode else []) \
        + ["-i", str(path), "-map", "0:v:0"] + ([] if decode else ["-c", "copy"]) + ["-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    counts = [ln for ln in lines if ln.startswith("frame=")]
    frames = int(counts[-1].split("=", 1)[1].split()[0]) if counts else 0
    errors = [ln for ln in lines if not ln.startswith("frame=")]
    return frames, (errors[0][:160] if proc.returncode != 0 and errors else None)


def _reader_from(path: Path, start: int, stop: int) -> Iterator[np.ndarray]:
    """RGB frames start..stop-1 from imageio's FFmpeg reader (it seeks with -ss to jump ahead)."""
    reader = iio2.get_reader(path, "ffmpeg")
    try:
        for t in range(start, stop):
            try:
                frame = reader.get_data(t)
            except IndexError:
                return  # the stream ended: FrameSource reports the truncation
            except Exception as err:
                raise UsgenInputError(path, f"frame {t} cannot be decoded ({_first_line(err)})") from None
            yield frame
    finally:
        reader.close()


def _grey(frame: np.ndarray) -> np.ndarray:
    """A grey frame stored as RGB (EchoNet AVIs) -> (H, W)."""
    if np.array_equal(frame[..., 0], frame[..., 2]):
        return np.ascontiguousarray(frame[..., 0])
    return np.rint(frame.mean(axis=-1)).astype(np.uint8)


def read_video(path: str | Path, lazy: bool = False, allow_partial: bool = False, scan: bool = True) -> Cine:
    """Read a video as a Cine. ``lazy``: frames decoded on demand (a FrameSource) rather than all
    at once. ``scan``: count the frames by decoding them once with ffmpeg (exact, finds truncated
    and corrupt files; refused unless ``allow_partial``); without it the count is the container's
    duration x frame rate, an estimate (what `usgen info` shows)."""
    path = check_regular(path)
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except Exception as err:
        raise UsgenInputError(path, f"not a readable video ({_first_line(err)})") from None
    fps = float(meta.get("fps") or 0.0)
    width, height = (int(v) for v in meta.get("size") or (0, 0))
    if width < 1 or height < 1:
        raise UsgenInputError(path, f"video frames are {width}x{height} pixels")
    times_from, frames_from = "video frame rate", "decoded"
    if not np.isfinite(fps) or fps <= 0:
        fps, times_from = 30.0, "none in file: 30 frames/s assumed"
    total, error = scan_video(path, decode=scan)
    if error is not None and total > 0 and not allow_partial:
        raise UsgenInputError(path, f"truncated or corrupt: decoding stops after {total} frames ({error}; "
                                    f"--allow-partial keeps those {total})")
    if total == 0:
        raise UsgenInputError(path, f"video holds no decodable frames{f' ({error})' if error else ''}")
    if not scan:
        frames_from = "stored packets (not decoded)"
    rgb = FrameSource((total, height, width, 3), np.uint8, lambda: _reader_from(path, 0, total), path,
                      seek=lambda t: _reader_from(path, t, total))
    source = rgb
    if is_grey_rgb(rgb.sample(16 if scan else 8)):  # grey video stored as RGB (EchoNet AVIs)
        source = FrameSource((total, height, width), np.uint8, lambda: map(_grey, rgb._open()), path,
                             seek=lambda t: map(_grey, _reader_from(path, t, total)))
    frames = source if lazy else np.asarray(source)
    return Cine(frames=frames, spacing=(1.0, 1.0, 1.0), times=np.arange(total) / fps,
                meta={"source": str(path), "format": "video", "spacing_from": "none in file: 1 mm assumed",
                      "times_from": times_from, "frames_from": frames_from})


LABEL_MAX = 31  # uint8 data whose largest value is this small is a mask or label map


def display_window(frames, source=None) -> tuple:
    """How ``to_uint8`` maps this clip to 0..255, decided once for the whole clip (on up to 64 evenly
    spaced frames of a FrameSource, so a long clip is not decoded for it): ("pass",) for uint8
    images, ("scale", k) for uint8 masks and label maps (max <= 31), ("window", lo, hi) for other
    types (their 0.5-99.5 % range). NaN or infinite pixels have no display value: refused."""
    sample = frames if isinstance(frames, np.ndarray) else sample_frames(frames, 64)
    if sample.dtype == np.uint8:
        top = int(sample.max()) if sample.size else 0
        return ("scale", 255 // top) if 0 < top <= LABEL_MAX else ("pass",)
    arr = np.asarray(sample, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise UsgenInputError(source, "pixel values include NaN or infinity, which no image or video format can show")
    lo, hi = (float(v) for v in np.percentile(arr, [0.5, 99.5])) if arr.size else (0.0, 1.0)
    return ("window", lo, hi if hi > lo else lo + 1.0)


def to_uint8(frames, window: tuple | None = None, source=None) -> np.ndarray:
    """Display pixels (see ``display_window``; computed here when not given)."""
    window = window or display_window(frames, source)
    if window[0] == "pass":
        return np.asarray(frames)
    if window[0] == "scale":
        return np.minimum(np.asarray(frames, dtype=np.uint16) * window[1], 255).astype(np.uint8)
    arr = np.asarray(frames, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise UsgenInputError(source, "pixel values include NaN or infinity, which no image or video format can show")
    lo, hi = window[1], window[2]
    return np.clip((arr - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _display_frames(cine: Cine, window: tuple, pad: tuple[int, int]) -> Iterator[np.ndarray]:
    """The cine's frames as display uint8, padded, one at a time (a lazily read clip streams)."""
    for t in range(cine.num_frames):
        frame = to_uint8(cine.frames[t], window, cine.meta.get("source"))
        if pad != (0, 0):
            frame = np.pad(frame, ((0, pad[0]), (0, pad[1])) + ((0, 0),) * (frame.ndim - 2))
        yield frame


def _encode(frames: Iterable[np.ndarray], size: tuple[int, int], rgb: bool, path: Path, fps: float,
            output_args: list[str]) -> None:
    """Pipe (H, W) grey or (H, W, 3) RGB uint8 frames of ``size`` into ffmpeg, one frame at a time."""
    h, w = size
    command = [get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24" if rgb else "gray", "-s", f"{w}x{h}", "-r", repr(float(fps)),
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
    """AVI: lossless FFV1 (grey or RGB). MP4: H.264 preview, padded to even width and height.
    Frames are converted and encoded one at a time, so a long (lazily read) clip streams."""
    path = Path(path)
    source = cine.meta.get("source")
    window = display_window(cine.frames, source)
    suffix = path.suffix.lower()
    if suffix == ".avi":
        output_args = ["-c:v", "ffv1", "-pix_fmt", "bgr0" if cine.is_rgb else "gray"]
    elif suffix == ".mp4":
        output_args = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]
    else:
        raise UsgenInputError(path, f"unknown video type '{suffix}' (use .avi or .mp4)")
    pad = (cine.height % 2, cine.width % 2) if suffix == ".mp4" else (0, 0)  # H.264 wants even sizes
    with atomic_path(path) as tmp:
        _encode(_display_frames(cine, window, pad), (cine.height + pad[0], cine.width + pad[1]), cine.is_rgb, tmp,
                cine.fps or 1.0, output_args)
    return path
