"""Frames of a `usgen dataset enhance` split held in memory, and the training crops drawn from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from USGenLib.datasets.layouts.manifest import MANIFEST_NAME
from USGenLib.errors import UsgenInputError
from USGenLib.progress import progress


class PairFrames:
    """Every frame of one split: ``lq``, ``hq``, ``labels`` (N, H, W) uint8, ``attenuation`` (N, H, W)
    float16, ``fov`` (N, H, W) bool, ``item`` (N,) the item index of each frame, ``ids`` the item ids.
    Frames of all items share one size (the data set's --size)."""

    def __init__(self, data: str | Path, split: str, max_items: int | None = None):
        from USGenLib.datasets.torch_datasets import EnhanceDataset

        data = Path(data)
        if not (data / MANIFEST_NAME).is_file():
            raise UsgenInputError(data, f"is not a `usgen dataset enhance` folder (no {MANIFEST_NAME})")
        dataset = EnhanceDataset(data, split=split)
        if len(dataset) == 0:
            raise UsgenInputError(data / MANIFEST_NAME, f"lists no items in split {split!r}")
        n = len(dataset) if max_items is None else min(max_items, len(dataset))
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("lq", "hq", "labels", "attenuation", "fov", "item")}
        self.ids: list[str] = []
        with progress(n, f"read {split} split", unit="item") as bar:
            for i in range(n):
                it = dataset[i]
                t = it["lq"].shape[1]
                parts["lq"].append((it["lq"][0].numpy() * 255).round().astype(np.uint8))
                parts["hq"].append((it["hq"][0].numpy() * 255).round().astype(np.uint8))
                parts["labels"].append(it["labels"][0].numpy().astype(np.uint8))
                parts["attenuation"].append(it["attenuation"][0].numpy().astype(np.float16))
                parts["fov"].append(np.repeat(it["fov_mask"][0].numpy() > 0, t, axis=0))
                parts["item"].append(np.full(t, i))
                self.ids.append(it["id"])
                bar.update(1)
        try:
            for key, arrays in parts.items():
                setattr(self, key, np.concatenate(arrays))
        except ValueError as err:
            raise UsgenInputError(data, f"holds frames of different sizes ({err})") from None

    def __len__(self) -> int:
        return len(self.lq)

    def tensors(self, index: np.ndarray | list[int], y0: int = 0, x0: int = 0, size: int | None = None,
                flip: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """Frames ``index`` (cropped to ``size`` at (y0, x0) when given; ``flip`` (B,) mirrors left-right)
        as float tensors: image-like (B, 1, h, w) in [0, 1], ``labels`` (B, h, w) int64."""
        index = np.asarray(index)
        H, W = self.lq.shape[1:]
        ys = slice(y0, y0 + size if size else H)
        xs = slice(x0, x0 + size if size else W)

        def take(arr: np.ndarray) -> np.ndarray:
            out = arr[index, ys, xs]
            if flip is not None:
                out = np.where(flip[:, None, None], out[:, :, ::-1], out)
            return np.ascontiguousarray(out)

        grey = lambda a: torch.from_numpy(take(a).astype(np.float32) / 255.0)[:, None]  # noqa: E731
        return {"lq": grey(self.lq), "hq": grey(self.hq), "labels": torch.from_numpy(take(self.labels).astype(np.int64)),
                "attenuation": torch.from_numpy(take(self.attenuation).astype(np.float32))[:, None],
                "fov": torch.from_numpy(take(self.fov).astype(np.float32))[:, None]}

    def random_crops(self, rng: np.random.Generator, batch: int, size: int) -> dict[str, torch.Tensor]:
        """``batch`` random frames, one ``size`` crop for the batch centred on a random FoV pixel of its
        first frame (kept inside the frame; the whole frame when it is smaller), mirrored left-right at
        random (the physics is symmetric)."""
        H, W = self.lq.shape[1:]
        size = min(size, H, W)
        index = rng.integers(0, len(self), batch)
        ys, xs = np.nonzero(self.fov[index[0]])
        k = int(rng.integers(0, len(ys))) if len(ys) else 0
        cy, cx = (int(ys[k]), int(xs[k])) if len(ys) else (H // 2, W // 2)
        y0 = min(max(cy - size // 2, 0), H - size)
        x0 = min(max(cx - size // 2, 0), W - size)
        return self.tensors(index, y0, x0, size, flip=rng.random(batch) < 0.5)
