"""PLUS toolkit tracked ultrasound sequences (``.igs.mha``, ``.igs.nrrd``, ``.seq.mha``) as cines.

PLUS (and Slicer's Sequences module) stores a tracked sweep as one 3-D image whose third axis is
the frame list (``Kinds = domain domain list``), with per-frame header fields::

    Seq_Frame0000_Timestamp = 232.542071                     (seconds, tracker clock)
    Seq_Frame0000_ProbeToTrackerTransform = 16 numbers       (4x4, row by row, mm)
    Seq_Frame0000_ProbeToTrackerTransformStatus = OK
    Seq_Frame0000_ImageStatus = OK

Read as a plain volume it would be a 21-slice CT. Here the time stamps become frame times (from the
first frame) and every ``..._Transform`` becomes a (T, 4, 4) array in ``cine.meta["transforms"]``,
with its per-frame status in ``cine.meta["transform_status"]``. Writers pass the transforms on: the
.seq.nrrd header carries them as PLUS writes them in NRRD (``Seq_FrameNNNN_<Name>:=``), and
``write_transform_sequence`` writes Slicer's linear-transform sequence file (``.seq.mha``, a
MetaImage header without pixels, as ``vtkMRMLLinearTransformSequenceStorageNode`` writes it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np
import SimpleITK as sitk

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_write_text
from USGenLib.types import Cine

FRAME_FIELD = re.compile(r"^Seq_Frame(\d+)_(\w+)$")


def is_plus_metaimage(path: str | Path) -> bool:
    """Whether a MetaImage file is a frame sequence (a list axis, or per-frame fields)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False  # not ours to judge: the volume reader gives the one-line error
    keys = reader.GetMetaDataKeys()
    kinds = reader.GetMetaData("Kinds").lower().split() if "Kinds" in keys else []
    return kinds[-1:] == ["list"] or any(FRAME_FIELD.match(k) for k in keys)


def frame_fields(header: Mapping[str, str], n: int, path: Path) -> tuple[np.ndarray | None, dict, dict]:
    """(time stamps or None, {transform name: (n, 4, 4)}, {name: [status per frame]}) from a
    header's ``Seq_FrameNNNN_*`` entries. A transform missing for some frame is the identity with
    status MISSING."""
    stamps: dict[int, float] = {}
    matrices: dict[str, dict[int, np.ndarray]] = {}
    status: dict[str, dict[int, str]] = {}
    for key, value in header.items():
        match = FRAME_FIELD.match(str(key))
        if not match:
            continue
        frame, name = int(match.group(1)), match.group(2)
        if frame >= n:
            raise UsgenInputError(path, f"{key} names frame {frame} but the sequence has {n} frames")
        value = str(value).strip()
        try:
            if name == "Timestamp":
                stamps[frame] = float(value)
            elif name.endswith("Transform"):
                numbers = np.array([float(v) for v in value.split()])
                if numbers.size != 16 or not np.all(np.isfinite(numbers)):
                    raise ValueError("not 16 finite numbers")
                matrices.setdefault(name, {})[frame] = numbers.reshape(4, 4)
            elif name.endswith("TransformStatus"):
                status.setdefault(name.removesuffix("Status"), {})[frame] = value
        except ValueError as err:
            raise UsgenInputError(path, f"{key} = '{value[:60]}' cannot be read ({err})") from None
    times = np.array([stamps[f] for f in range(n)]) if len(stamps) == n else None
    transforms = {name: np.stack([per.get(f, np.eye(4)) for f in range(n)]) for name, per in sorted(matrices.items())}
    statuses = {name: [status.get(name, {}).get(f, "OK" if f in matrices[name] else "MISSING") for f in range(n)]
                for name in transforms}
    return times, transforms, statuses


def sequence_meta(header: Mapping[str, str], n: int, path: Path) -> tuple[np.ndarray | None, dict]:
    """Frame times (seconds from the first frame; None without usable stamps) and the meta entries
    of a tracked sequence."""
    stamps, transforms, statuses = frame_fields(header, n, path)
    meta: dict = {}
    if transforms:
        meta["transforms"] = transforms
        meta["transform_status"] = statuses
    if "UltrasoundImageOrientation" in header:
        meta["ultrasound_image_orientation"] = str(header["UltrasoundImageOrientation"]).strip()
    if stamps is None or (n > 1 and np.any(np.diff(stamps) <= 0)):
        return None, meta
    meta["time_origin_s"] = float(stamps[0])
    meta["times_from"] = "Seq_Frame Timestamp"
    return stamps - stamps[0], meta


def read_plus_sequence(path: str | Path) -> Cine:
    """A MetaImage frame sequence as a cine: frames along the list axis, spacing from
    ElementSpacing, times and transforms from the per-frame fields."""
    path = Path(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise UsgenInputError(path, f"not a readable MetaImage sequence ({first[:160]})") from err
    if img.GetDimension() != 3:
        raise UsgenInputError(path, f"a {img.GetDimension()}-D image is not a frame sequence")
    if img.GetNumberOfComponentsPerPixel() not in (1, 3):
        raise UsgenInputError(path, f"{img.GetNumberOfComponentsPerPixel()}-component pixels are not supported "
                                    "(grey or RGB only)")
    frames = sitk.GetArrayFromImage(img)  # (T, H, W[, 3])
    n = frames.shape[0]
    times, meta = sequence_meta({k: img.GetMetaData(k) for k in img.GetMetaDataKeys()}, n, path)
    if times is None:
        times = np.arange(n, dtype=float)
        meta["times_from"] = "no increasing time stamps: one unit per frame"
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    spacing = (*img.GetSpacing()[:2], 1.0)  # the third spacing is the list axis's, not a thickness
    return Cine(frames=frames, spacing=spacing, origin=img.GetOrigin(), direction=direction, times=times,
                meta={"source": str(path), "format": "plus", "modality": "US",
                      "spacing_from": "ElementSpacing", **meta})


def frame_field_lines(cine: Cine, separator: str) -> list[str]:
    """``Seq_FrameNNNN_<Name>Transform`` and ``...TransformStatus`` lines for ``cine``'s transforms
    (separator ``" = "`` for MetaImage, ``":="`` for NRRD key/value pairs). Matrices are written
    with the shortest round-trip ``repr``, so they read back bit-identical."""
    transforms = cine.meta.get("transforms") or {}
    statuses = cine.meta.get("transform_status") or {}
    lines = []
    for f in range(cine.num_frames):
        for name, matrices in transforms.items():
            values = " ".join(repr(float(v)) for v in np.asarray(matrices[f]).reshape(-1))
            status = statuses[name][f] if name in statuses else "OK"
            lines.append(f"Seq_Frame{f:04d}_{name}{separator}{values}")
            lines.append(f"Seq_Frame{f:04d}_{name}Status{separator}{status}")
    return lines


def transforms_path(output: str | Path) -> Path:
    """Where the transform sequence of a cine written to ``output`` goes: ``<name>.transforms.seq.mha``."""
    output = Path(output)
    return output.with_name(output.name.split(".")[0] + ".transforms.seq.mha")


def write_transform_sequence(cine: Cine, path: str | Path) -> Path:
    """Slicer's linear-transform sequence file: a MetaImage header without pixels whose per-frame
    fields hold every transform and the frame times (the same index values as the cine's
    .seq.nrrd, so a sequence browser plays them in step). Slicer's *Sequence Metafile* reader
    (drag and drop) loads every transform under one browser."""
    path = Path(path)
    lines = ["ObjectType = Image", "NDims = 3", "AnatomicalOrientation = RAI", "BinaryData = True",
             "CompressedData = False", f"DimSize = 0 0 {cine.num_frames}", "ElementSpacing = 1 1 1",
             "Offset = 0 0 0", "TransformMatrix = 1 0 0 0 1 0 0 0 1", "ElementType = MET_UCHAR",
             "Kinds = domain domain list"]
    transform_lines = iter(frame_field_lines(cine, " = "))
    per_frame = 2 * len(cine.meta.get("transforms") or {})
    for f, t in enumerate(cine.times):
        lines += [next(transform_lines) for _ in range(per_frame)]
        lines.append(f"Seq_Frame{f:04d}_Timestamp = {float(t)!r}")
    lines.append("ElementDataFile = LOCAL")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
