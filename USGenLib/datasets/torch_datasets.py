"""torch Datasets over USGen data sets (``usgen dataset cfd|echo|enhance``), the real
EchoNet-Dynamic layout, and a user's folder of paired DICOM cines.

Every item is a dict. Images are float32 tensors shaped (C, T, H, W): channels first, time second,
as MONAI's 3-D networks take video (time is the first spatial axis). Grey and RGB intensities are
scaled to [0, 1]; masks are {0, 1}; label maps keep their label values; attenuation keeps its units.
Scalars (EF, coverage, frame indices) are Python numbers and ids are strings, so a DataLoader's
default collate turns a batch into (B, C, T, H, W) tensors, 1-D tensors of numbers and lists of str.

Augmentation: ``transform`` is any callable dict -> dict, applied to the finished item, so MONAI
dictionary transforms plug in directly. Their ``spatial_axis`` counts the axes after the channel:
0 = time, 1 = rows (H), 2 = columns (W). A left-right flip of cine and LV mask together::

    from monai.transforms import Compose, RandFlipd
    from torch.utils.data import DataLoader
    from USGenLib.datasets.torch_datasets import EchoDataset

    flip = Compose([RandFlipd(keys=["cine", "lv_mask"], spatial_axis=2, prob=0.5)])
    flip.set_random_state(seed=0)                      # reproducible augmentation
    train = EchoDataset("data/echo", split="train", transform=flip, clip_frames=16)
    for batch in DataLoader(train, batch_size=8, shuffle=True):
        batch["cine"]          # (8, 1, 16, H, W) float32 in [0, 1]
        batch["ef"]            # (8,) float64, percent

MONAI returns ``MetaTensor`` (a torch.Tensor subclass) for the keys it touched; it batches like
a tensor.

Bad input (no manifest.csv, a manifest of another kind, an unknown or empty split, a file listed
but missing, an unpaired or mismatched DICOM pair) raises ``UsgenInputError`` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from USGenLib.datasets.layouts.manifest import ITEM_FILES, MANIFEST_NAME, SPLITS, read_manifest
from USGenLib.errors import UsgenInputError
from USGenLib.io import read_cine, read_volume

Item = dict[str, Any]
Transform = Callable[[Item], Item]
ECHONET_SPLITS = ("TRAIN", "VAL", "TEST")


# ----------------------------------------------------------------------------------------------
# helpers


def frames_to_tensor(frames: np.ndarray, scale: bool = True) -> torch.Tensor:
    """(T, H, W) -> (1, T, H, W) or (T, H, W, 3) -> (3, T, H, W) float32 (a copy, so memory maps
    and read-only arrays are safe). ``scale``: integer pixels are divided by their dtype's maximum
    (uint8 -> [0, 1]); float pixels are kept as they are."""
    arr = np.asarray(frames)
    out = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    out = out.permute(3, 0, 1, 2).contiguous() if arr.ndim == 4 else out.unsqueeze(0)
    if scale and np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        out /= float(np.iinfo(arr.dtype).max)
    return out


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(int(generator))


def clip_start(num_frames: int, clip_frames: int | None, offset: int | None = None,
               generator: torch.Generator | None = None) -> int:
    """First frame of a ``clip_frames`` window: ``offset`` if given, else uniform over the starts that
    keep the window inside the cine (0 when the cine is shorter), drawn from ``generator`` (torch's
    global RNG when None, which a DataLoader seeds per worker)."""
    if clip_frames is None:
        return 0
    if offset is not None:
        if not 0 <= offset < num_frames:
            raise ValueError(f"clip offset {offset} outside the cine's {num_frames} frames")
        return int(offset)
    high = max(num_frames - clip_frames, 0) + 1
    return int(torch.randint(high, (1,), generator=generator).item())


def take_clip(tensor: torch.Tensor, start: int, clip_frames: int | None) -> torch.Tensor:
    """Frames [start, start + clip_frames) of a (C, T, H, W) tensor; frames past the end are zeros
    (as EchoNet-Dynamic's own loader pads short videos)."""
    if clip_frames is None:
        return tensor
    out = tensor[:, start:start + clip_frames]
    if out.shape[1] < clip_frames:
        pad = tensor.new_zeros((tensor.shape[0], clip_frames - out.shape[1], *tensor.shape[2:]))
        out = torch.cat([out, pad], dim=1)
    return out.contiguous()


def _check_clip_args(clip_frames: int | None, clip_offset: int | None) -> None:
    if clip_frames is not None and clip_frames < 1:
        raise ValueError(f"clip_frames must be at least 1, got {clip_frames}")
    if clip_offset is not None and clip_offset < 0:
        raise ValueError(f"clip_offset must be >= 0, got {clip_offset}")


class _TransformMixin:
    transform: Transform | None

    def _finish(self, item: Item) -> Item:
        return self.transform(item) if self.transform is not None else item


# ----------------------------------------------------------------------------------------------
# USGen item-folder data sets


class _ManifestDataset(_TransformMixin, Dataset):
    """Items of one kind listed in ROOT/manifest.csv, optionally one split."""

    kind: ClassVar[str] = ""

    def __init__(self, root: str | Path, split: str | None = None, transform: Transform | None = None):
        self.root = Path(root)
        self.transform = transform
        rows = read_manifest(self.root)
        manifest = self.root / MANIFEST_NAME
        kinds = {r.get("kind") for r in rows} - {None}
        if kinds and kinds != {self.kind}:
            raise UsgenInputError(manifest, f"is a {', '.join(sorted(kinds))} data set, not {self.kind}")
        if split is not None and split not in SPLITS:
            raise UsgenInputError(self.root, f"unknown split {split!r} (one of {', '.join(SPLITS)}, or None for all)")
        self.split = split
        self.rows: list[dict] = [r for r in rows if split is None or r["split"] == split]
        if not self.rows:
            raise UsgenInputError(manifest, f"lists no items{'' if split is None else f' in split {split!r}'}")
        for row in self.rows:
            for name in ITEM_FILES[self.kind]:
                path = self.item_dir(row) / name
                if not path.is_file():
                    raise UsgenInputError(path, f"missing (item {row['id']} of {manifest})")

    @property
    def ids(self) -> list[str]:
        return [str(r["id"]) for r in self.rows]

    def item_dir(self, row: dict) -> Path:
        return self.root / str(row.get("path") or row["id"])

    def _cine(self, row: dict, name: str, scale: bool = True) -> torch.Tensor:
        return frames_to_tensor(read_cine(self.item_dir(row) / name).frames, scale=scale)

    def __len__(self) -> int:
        return len(self.rows)


class CFDDataset(_ManifestDataset):
    """Colour-flow removal pairs from ``usgen dataset cfd``.

    Item: ``cfd`` (3, T, H, W) RGB in [0, 1]; ``bmode`` (1, T, H, W) grey in [0, 1]; ``mask``
    (1, T, H, W) in {0, 1} (1 where colour replaced grey); ``coverage`` float (mean mask fraction);
    ``coverage_quartile`` int 1..4; ``id`` str.

    ``frames``: keep only the first ``frames`` frames of every clip (so clips of unequal length
    batch together); an item with fewer frames raises UsgenInputError.
    """

    kind = "cfd"

    def __init__(self, root: str | Path, split: str | None = "train", transform: Transform | None = None,
                 frames: int | None = None):
        super().__init__(root, split, transform)
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        self.frames = frames

    def __getitem__(self, index: int) -> Item:
        row = self.rows[index]
        item = {"cfd": self._cine(row, "cfd.seq.nrrd"), "bmode": self._cine(row, "bmode.seq.nrrd"),
                "mask": self._cine(row, "mask.seq.nrrd", scale=False)}
        if self.frames is not None:
            t = item["cfd"].shape[1]
            if t < self.frames:
                raise UsgenInputError(self.item_dir(row) / "cfd.seq.nrrd",
                                      f"has {t} frames, fewer than the {self.frames} asked for")
            item = {k: v[:, :self.frames].contiguous() for k, v in item.items()}
        item.update(coverage=float(row["coverage"]), coverage_quartile=int(row["coverage_quartile"]),
                    id=str(row["id"]))
        return self._finish(item)

    def sampling_weights(self) -> torch.Tensor:
        """(N,) float64 per-item weights = coverage quartile (1..4): higher-coverage clips are drawn
        more often, as in the CFD-removal paper."""
        quartiles = [r.get("coverage_quartile") for r in self.rows]
        if any(q is None for q in quartiles):
            raise UsgenInputError(self.root / MANIFEST_NAME, "lacks coverage_quartile values for weighted sampling")
        return torch.tensor(quartiles, dtype=torch.float64)

    def weighted_sampler(self, num_samples: int | None = None,
                         generator: torch.Generator | None = None) -> WeightedRandomSampler:
        """A sampler (with replacement, ``num_samples`` draws, default one epoch = len(self)) over
        ``sampling_weights()``; pass it as DataLoader(sampler=...)."""
        return WeightedRandomSampler(self.sampling_weights(), num_samples or len(self), replacement=True,
                                     generator=generator)


class EchoDataset(_ManifestDataset):
    """Synthetic echocardiograms from ``usgen dataset echo`` (USGen item layout).

    Item: ``cine`` (1, T, H, W) grey in [0, 1]; ``lv_mask`` (1, T, H, W) in {0, 1}; ``ef`` float
    (percent); ``edv``, ``esv`` float (ml); ``ed_frame``, ``es_frame`` int (indices into the full
    cine, not the clip); ``clip_start`` int (0 without clipping); ``view`` str; ``id`` str.

    ``clip_frames``: T = ``clip_frames``, a window starting at ``clip_offset`` when given, else at a
    random start drawn from ``generator`` (a torch.Generator or an int seed: deterministic in one
    process; None: torch's global RNG). Cines shorter than the window are padded with zero frames.
    """

    kind = "echo"

    def __init__(self, root: str | Path, split: str | None = None, transform: Transform | None = None,
                 clip_frames: int | None = None, clip_offset: int | None = None,
                 generator: torch.Generator | int | None = None):
        super().__init__(root, split, transform)
        _check_clip_args(clip_frames, clip_offset)
        self.clip_frames, self.clip_offset = clip_frames, clip_offset
        self.generator = _as_generator(generator)

    def __getitem__(self, index: int) -> Item:
        row = self.rows[index]
        cine = self._cine(row, "cine.seq.nrrd")
        mask = self._cine(row, "lv_mask.seq.nrrd", scale=False)
        start = clip_start(cine.shape[1], self.clip_frames, self.clip_offset, self.generator)
        item = {"cine": take_clip(cine, start, self.clip_frames), "lv_mask": take_clip(mask, start, self.clip_frames),
                "ef": float(row["ef"]), "edv": float(row["edv"]), "esv": float(row["esv"]),
                "ed_frame": int(row["ed_frame"]), "es_frame": int(row["es_frame"]), "clip_start": start,
                "view": str(row["view"]), "id": str(row["id"])}
        return self._finish(item)


class EnhanceDataset(_ManifestDataset):
    """Simulated low/high-quality pairs from ``usgen dataset enhance``.

    Item: ``lq``, ``hq`` (1, T, H, W) grey in [0, 1]; ``labels`` (1, T, H, W) float32 holding the
    integer tissue label values (``.long()`` for one-hot); ``attenuation`` (1, T, H, W) float32 as
    stored (integral attenuation map); ``fov_mask`` (1, 1, H, W) in {0, 1}; ``id`` str.
    """

    kind = "enhance"

    def __getitem__(self, index: int) -> Item:
        row = self.rows[index]
        fov = read_volume(self.item_dir(row) / "fov_mask.nrrd", kind="labels").array  # (1, H, W)
        item = {"lq": self._cine(row, "lq.seq.nrrd"), "hq": self._cine(row, "hq.seq.nrrd"),
                "labels": self._cine(row, "labels.seq.nrrd", scale=False),
                "attenuation": self._cine(row, "attenuation.seq.nrrd", scale=False),
                "fov_mask": torch.from_numpy(np.array(fov, dtype=np.float32)).reshape(1, 1, *fov.shape[-2:]),
                "id": str(row["id"])}
        return self._finish(item)


# ----------------------------------------------------------------------------------------------
# EchoNet-Dynamic


def tracing_disc_volume(rows: np.ndarray) -> float:
    """Single-plane method-of-discs volume (pixel^3) of one traced frame: rows (N, 4) X1, Y1, X2, Y2,
    the long axis first, then the disc chords. Only its ranking is used (ED = largest)."""
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) < 2:
        return 0.0
    length = float(np.hypot(rows[0, 2] - rows[0, 0], rows[0, 3] - rows[0, 1]))
    diameters = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
    return float(np.pi / 4.0 * np.sum(diameters ** 2) * length / len(diameters))


class EchoNetDynamicDataset(_TransformMixin, Dataset):
    """The EchoNet-Dynamic layout: ROOT/FileList.csv, ROOT/VolumeTracings.csv, ROOT/Videos/*.avi.

    Reads the real data set and the copy ``usgen dataset echo`` writes to DIR/echonet/ alike.
    Item: ``cine`` (1, T, H, W) grey in [0, 1] (EchoNet AVIs are grey stored as RGB; a video that
    decodes with unequal channels is averaged to grey); ``ef`` float (percent); ``edv``, ``esv``
    float (ml); ``fps`` float; ``lv_trace_frames`` (K,) int64 tensor, the traced frame indices in
    ascending order (K = 2 in EchoNet: ED and ES, so batches collate); ``ed_frame``, ``es_frame``
    int, the traced frames with the largest and smallest disc volume; ``clip_start`` int; ``id`` str
    (the FileName). Frame indices refer to the full video, not the clip.

    As EchoNet-Dynamic's own loader does, videos with fewer than two traced frames are left out
    (their ids are in ``self.untraced``); a listed video missing from Videos/ raises UsgenInputError.
    ``clip_frames``/``clip_offset``/``generator`` as in EchoDataset.
    """

    def __init__(self, root: str | Path, split: str | None = "TRAIN", transform: Transform | None = None,
                 clip_frames: int | None = None, clip_offset: int | None = None,
                 generator: torch.Generator | int | None = None):
        from USGenLib.datasets.echonet import read_echonet_filelist, read_volume_tracings

        self.root = Path(root)
        self.transform = transform
        _check_clip_args(clip_frames, clip_offset)
        self.clip_frames, self.clip_offset = clip_frames, clip_offset
        self.generator = _as_generator(generator)
        if split is not None and split.upper() not in ECHONET_SPLITS:
            raise UsgenInputError(self.root, f"unknown EchoNet split {split!r} (one of {', '.join(ECHONET_SPLITS)}, or None)")
        self.split = None if split is None else split.upper()
        videos = self.root / "Videos"
        if not videos.is_dir():
            raise UsgenInputError(videos, "missing (an EchoNet-Dynamic folder holds FileList.csv, VolumeTracings.csv, Videos/)")
        rows = [r for r in read_echonet_filelist(self.root) if self.split is None or r["Split"] == self.split]
        tracings = read_volume_tracings(self.root)
        missing = [r["FileName"] for r in rows if not (videos / f"{r['FileName']}.avi").is_file()]
        if missing:
            raise UsgenInputError(videos / f"{missing[0]}.avi",
                                  f"missing ({len(missing)} of the {len(rows)} listed videos are absent)")
        self.untraced = [r["FileName"] for r in rows if len(tracings.get(r["FileName"], {})) < 2]
        untraced = set(self.untraced)
        self.rows: list[dict] = [r for r in rows if r["FileName"] not in untraced]
        if not self.rows:
            raise UsgenInputError(self.root / "FileList.csv",
                                  f"lists no traced videos{'' if split is None else f' in split {self.split}'}")
        self.tracings = {r["FileName"]: tracings[r["FileName"]] for r in self.rows}

    @property
    def ids(self) -> list[str]:
        return [r["FileName"] for r in self.rows]

    def video_path(self, index: int) -> Path:
        return self.root / "Videos" / f"{self.rows[index]['FileName']}.avi"

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Item:
        row = self.rows[index]
        frames = read_cine(self.video_path(index)).frames
        if frames.ndim == 4:
            frames = np.asarray(frames, dtype=np.float32).mean(axis=-1) / 255.0
        cine = frames_to_tensor(frames)
        traced = self.tracings[row["FileName"]]
        volumes = {f: tracing_disc_volume(rows) for f, rows in traced.items()}
        start = clip_start(cine.shape[1], self.clip_frames, self.clip_offset, self.generator)
        item = {"cine": take_clip(cine, start, self.clip_frames), "ef": row["EF"], "edv": row["EDV"],
                "esv": row["ESV"], "fps": row["FPS"],
                "lv_trace_frames": torch.tensor(sorted(traced), dtype=torch.int64),
                "ed_frame": int(max(volumes, key=volumes.get)), "es_frame": int(min(volumes, key=volumes.get)),
                "clip_start": start, "id": row["FileName"]}
        return self._finish(item)


# ----------------------------------------------------------------------------------------------
# a user's paired DICOM cines


def _dicom_shape(path: Path) -> tuple[int, int, int] | None:
    """(frames, rows, columns) from a DICOM header without reading pixels; None if not DICOM."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
    except Exception:
        return None


def _shape_text(shape: Sequence[int]) -> str:
    return f"{shape[0]} frames of {shape[1]}x{shape[2]} (HxW)"


class PairedDicomDataset(_TransformMixin, Dataset):
    """Pairs of cines (source, target) of equal frame count and size, e.g. a user's CFD cines and
    their B-mode counterparts. Any file ``read_cine`` reads works; ``from_folder`` pairs DICOMs by name.

    Item: ``source`` (C, T, H, W) and ``target`` (C, T, H, W) in [0, 1] (C = 3 for RGB, 1 for grey;
    the two may differ); ``id`` str. A pair whose frame counts or sizes differ raises
    UsgenInputError naming the target file (checked from DICOM headers at construction, and from
    the pixels when an item is read).
    """

    def __init__(self, pairs: Sequence[tuple[str | Path, str | Path]], transform: Transform | None = None,
                 ids: Sequence[str] | None = None):
        self.pairs = [(Path(s), Path(t)) for s, t in pairs]
        self.transform = transform
        if not self.pairs:
            raise UsgenInputError(None, "no (source, target) pairs given")
        self.ids = list(ids) if ids is not None else [s.name.split(".")[0] for s, _ in self.pairs]
        if len(self.ids) != len(self.pairs):
            raise ValueError(f"{len(self.ids)} ids for {len(self.pairs)} pairs")
        for source, target in self.pairs:
            for path in (source, target):
                if not path.is_file():
                    raise UsgenInputError(path, "file does not exist")
            a, b = _dicom_shape(source), _dicom_shape(target)
            if a is not None and b is not None and a != b:
                raise UsgenInputError(target, f"has {_shape_text(b)} but its source {source.name} has {_shape_text(a)}")

    @classmethod
    def from_folder(cls, folder: str | Path, source_glob: str = "*_cfd.dcm", target_suffix: str = "_bmode.dcm",
                    transform: Transform | None = None) -> "PairedDicomDataset":
        """Pair every file matching ``source_glob`` with the file named by swapping the glob's literal
        ending for ``target_suffix`` (``case1_cfd.dcm`` -> ``case1_bmode.dcm``; id ``case1``).
        A source without its partner, or a folder without pairs, raises UsgenInputError."""
        folder = Path(folder)
        if not folder.is_dir():
            raise UsgenInputError(folder, "is not a folder")
        tail = re.split(r"[*?\[\]]", source_glob)[-1]
        if not tail:
            raise ValueError(f"source_glob {source_glob!r} must end in literal text (e.g. '*_cfd.dcm')")
        pairs, ids = [], []
        for source in sorted(folder.glob(source_glob)):
            if not source.is_file() or not source.name.endswith(tail):
                continue
            stem = source.name[:-len(tail)]
            target = folder / f"{stem}{target_suffix}"
            if target == source:
                continue
            if not target.is_file():
                raise UsgenInputError(target, f"missing: the partner of {source.name}")
            pairs.append((source, target))
            ids.append(stem)
        if not pairs:
            raise UsgenInputError(folder, f"holds no pairs (files matching {source_glob} with a partner ending {target_suffix})")
        return cls(pairs, transform=transform, ids=ids)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Item:
        source_path, target_path = self.pairs[index]
        source, target = read_cine(source_path).frames, read_cine(target_path).frames
        if source.shape[:3] != target.shape[:3]:
            raise UsgenInputError(target_path, f"has {_shape_text(target.shape)} but its source "
                                               f"{source_path.name} has {_shape_text(source.shape)}")
        item = {"source": frames_to_tensor(source), "target": frames_to_tensor(target), "id": self.ids[index]}
        return self._finish(item)


__all__ = ["CFDDataset", "EchoDataset", "EchoNetDynamicDataset", "EnhanceDataset", "PairedDicomDataset",
           "frames_to_tensor", "clip_start", "take_clip", "tracing_disc_volume"]
