"""Frames read on demand, in order: how `usgen convert` and `usgen info` handle clips longer than memory.

A ``FrameSource`` stands in for a cine's (T, H, W[, 3]) array. It knows its shape and dtype from
the file's header and decodes a frame only when asked: writers that go frame by frame (.seq.nrrd,
video, DICOM) then hold one frame at a time, and previews and ``usgen info`` decode only the frames
they sample. ``np.asarray(source)`` still gives the whole clip, after a memory-budget check.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from USGenLib.errors import UsgenInputError
from USGenLib.limits import require_memory


class FrameSource:
    """A read-only (T, H, W[, 3]) array of frames decoded on demand.

    shape, dtype: what the header declares.
    open_frames:  () -> iterator over the frames in order (a fresh decoder each call).
    path:         the file, for error messages.
    seek:         optional (t) -> iterator starting at frame t, for formats that can jump.
    Sequential access (``for t in range(T): source[t]``) decodes each frame once; going back
    restarts the decoder. A decoder that ends before T frames raises UsgenInputError ("truncated").
    """

    def __init__(self, shape: tuple[int, ...], dtype, open_frames: Callable[[], Iterator[np.ndarray]], path,
                 seek: Callable[[int], Iterator[np.ndarray]] | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.path = path
        self._open, self._seek = open_frames, seek
        self._it: Iterator[np.ndarray] | None = None
        self._next = 0

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    frame_nbytes = property(lambda self: int(np.prod(self.shape[1:])) * self.dtype.itemsize)
    nbytes = property(lambda self: self.shape[0] * self.frame_nbytes)

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        t = int(t)
        if t < 0:
            t += self.shape[0]
        if not 0 <= t < self.shape[0]:
            raise IndexError(f"frame {t} of {self.shape[0]}")
        if self._it is None or t < self._next or (self._seek is not None and t > self._next + 16):
            self._it = self._seek(t) if self._seek is not None else self._open()
            self._next = t if self._seek is not None else 0
        while True:
            try:
                frame = next(self._it)
            except StopIteration:
                self._it = None
                raise UsgenInputError(self.path, f"truncated: frame {self._next + 1} of the {self.shape[0]} the file "
                                                 "declares cannot be read") from None
            self._next += 1
            if self._next - 1 == t:
                break
        frame = np.asarray(frame)
        if frame.shape != self.shape[1:]:
            raise UsgenInputError(self.path, f"frame {t} decodes to {frame.shape}, not the declared {self.shape[1:]}")
        return frame.astype(self.dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.shape[0]):
            yield self.frame(t)

    def __getitem__(self, key):
        if isinstance(key, tuple):  # frames first, then the rest of the index on what they give
            first, rest = key[0], key[1:]
            if isinstance(first, (int, np.integer)):
                return self.frame(first)[rest]
            return self[first][(slice(None),) + rest]
        if isinstance(key, (int, np.integer)):
            return self.frame(key)
        idx = np.arange(self.shape[0])[key]
        require_memory(self.path, len(idx) * self.frame_nbytes, f"{len(idx)} frames")
        out = np.empty((len(idx),) + self.shape[1:], self.dtype)
        order = np.argsort(idx, kind="stable")  # decode in file order, place where asked
        for n in order:
            out[n] = self.frame(idx[n])
        return out

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def sample(self, count: int) -> np.ndarray:
        """Up to ``count`` evenly spaced frames (first and last included), stacked."""
        return self[sample_indices(self.shape[0], count)]


def sample_indices(total: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))


def frame_at(frames, t: int) -> np.ndarray:
    """Frame t of an array or FrameSource, as an ndarray."""
    return np.asarray(frames[int(t)])


def sample_frames(frames, count: int) -> np.ndarray:
    """Up to ``count`` evenly spaced frames of an array or FrameSource (all of an in-memory array
    when count covers it)."""
    return np.asarray(frames[sample_indices(len(frames), count)])
