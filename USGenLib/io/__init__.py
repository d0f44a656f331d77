"""Readers and writers, chosen by file name ending. Every write is atomic.

Cines:   DICOM (.dcm or no ending), video (.avi .mp4 .mov .mkv .webm), Slicer sequences
         (.seq.nrrd, .nrrd), PLUS tracked sequences (.igs.mha, .igs.nrrd, .seq.mha) -> Cine;  Cine -> .seq.nrrd .nrrd .dcm .avi .mp4 .gif .png (contact sheet)
Volumes: DICOM series folder, .nii .nii.gz .nrrd .nhdr .mha .mhd -> Volume;
         Volume -> .nrrd .nii .nii.gz .mha .mhd, and .seg.nrrd for label maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, check_output_folder
from USGenLib.io.dicom import bundled_dicom, read_dicom_cine, write_dicom_cine
from USGenLib.io.plus import is_plus_metaimage, read_plus_sequence, transforms_path, write_transform_sequence
from USGenLib.io.nrrdbody import read_nrrd_header
from USGenLib.io.preview import write_contact_sheet, write_gif
from USGenLib.io.segmentation import read_segmentation, write_segmentation
from USGenLib.io.seqnrrd import read_seq_nrrd, write_seq_nrrd
from USGenLib.io.video import VIDEO_SUFFIXES, read_video, write_video
from USGenLib.io.volume import read_volume, write_volume
from USGenLib.limits import check_regular
from USGenLib.types import Cine, Volume

CINE_WRITE_SUFFIXES = (".seq.nrrd", ".nrrd", ".dcm", ".avi", ".mp4", ".gif", ".png")
PREVIEW_SUFFIXES = (".gif", ".png")
VOLUME_ONLY_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd")
VOLUME_WRITE_SUFFIXES = (".seg.nrrd", ".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")


def suffix_of(path: str | Path) -> str:
    """The file type ending, with compound endings kept: ``.seq.nrrd``, ``.seg.nrrd``, ``.nii.gz``."""
    name = Path(path).name.lower()
    for compound in (".seq.nrrd", ".seg.nrrd", ".nii.gz", ".seq.nhdr"):
        if name.endswith(compound):
            return compound
    return Path(name).suffix


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _require_file(path: Path) -> None:
    check_regular(path, folder_ok=True)  # FIFOs and devices are refused before anything opens them
    if path.is_file() and path.stat().st_size == 0:
        raise UsgenInputError(path, "file is empty")


def is_volume_input(path: str | Path) -> bool:
    """Whether ``path`` is read as a Volume (rather than a Cine) by ``read_any``."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix in (".mha", ".mhd") and path.is_file() and is_plus_metaimage(path):
        return False
    if path.is_dir() or suffix in VOLUME_ONLY_SUFFIXES or suffix in (".seg.nrrd", ".nhdr"):
        return True
    if suffix == ".nrrd":
        header, body = read_nrrd_header(path)
        sizes = body.sizes
        return "list" not in [str(k).lower() for k in header.get("kinds", [])] and len(sizes) == 3 \
            and min(sizes) > 1 and not str(path).lower().endswith(".seq.nrrd")
    return False


def read_cine(path: str | Path, lazy: bool = False, allow_partial: bool = False) -> Cine:
    """Read a cine. ``lazy``: frames decoded on demand where the format allows (a FrameSource), so
    a writer going frame by frame never holds the clip. ``allow_partial``: keep the frames of a
    truncated video or DICOM that can be read (else such a file is refused)."""
    path = Path(path)
    if path.is_dir():
        raise UsgenInputError(path, "is a folder; a cine is one DICOM file, video or .seq.nrrd")
    _require_file(path)
    suffix = suffix_of(path)
    if suffix in (".seq.nrrd", ".nrrd", ".seq.nhdr", ".nhdr"):
        return read_seq_nrrd(path, lazy=lazy)
    if suffix in VIDEO_SUFFIXES:
        return read_video(path, lazy=lazy, allow_partial=allow_partial)
    if suffix in (".mha", ".mhd"):
        if not is_plus_metaimage(path):
            raise UsgenInputError(path, "a MetaImage without a list axis or Seq_Frame fields is a volume, not a cine")
        return read_plus_sequence(path)
    if suffix in (".dcm", "", ".dicom") or _is_dicom_file(path):
        return read_dicom_cine(path, lazy=lazy, allow_partial=allow_partial)
    raise UsgenInputError(path, f"unknown file type '{suffix}' (expected .dcm, .seq.nrrd, .nrrd, .igs.mha, .avi, .mp4)")


def read_any(path: str | Path, lazy: bool = False, allow_partial: bool = False) -> Cine | Volume:
    """A Volume for volume files and DICOM series folders, else a Cine (see ``read_cine``)."""
    path = Path(path)
    _require_file(path)
    if path.is_dir():
        if not any(path.iterdir()):
            raise UsgenInputError(path, "folder is empty")
        return read_volume(path)
    if is_volume_input(path):
        if suffix_of(path) == ".seg.nrrd":
            return read_segmentation(path)[0]
        return read_volume(path)
    return read_cine(path, lazy=lazy, allow_partial=allow_partial)


def write_cine(cine: Cine, path: str | Path, deidentify: bool = False, labels: bool = False) -> Path:
    """Write ``cine`` in the format its ending names (see module docstring); ``labels``: a label or
    mask cine, which a .seq.nrrd marks for Slicer to load as label maps (other formats have no such mark)."""
    path = Path(path)
    suffix = suffix_of(path)
    check_output_folder(path)
    if suffix in (".seq.nrrd", ".nrrd"):
        return write_seq_nrrd(cine, path, labels=labels)
    if suffix == ".dcm":
        return write_dicom_cine(cine, path, deidentify=deidentify)
    if suffix in (".avi", ".mp4"):
        return write_video(cine, path)
    if suffix == ".gif":
        return write_gif(cine, path)
    if suffix == ".png":
        return write_contact_sheet(cine, path)
    raise UsgenInputError(path, f"unknown output type '{suffix}' for a cine (use one of {', '.join(CINE_WRITE_SUFFIXES)})")


def write_tracked_cine(cine: Cine, path: str | Path, deidentify: bool = False) -> list[Path]:
    """``write_cine``, plus the transform sequence of a tracked cine (PLUS) beside it, except for
    previews. The transforms go first, so the cine appearing means the job is done; if the cine
    cannot be written they are removed again."""
    path = Path(path)
    if not cine.meta.get("transforms") or suffix_of(path) in PREVIEW_SUFFIXES:
        return [write_cine(cine, path, deidentify=deidentify)]
    check_output_folder(path)
    sidecar = write_transform_sequence(cine, transforms_path(path))
    try:
        return [write_cine(cine, path, deidentify=deidentify), sidecar]
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise


def write_any(data: Cine | Volume, path: str | Path, deidentify: bool = False) -> Path:
    path = Path(path)
    if isinstance(data, Cine):
        return write_cine(data, path, deidentify=deidentify)
    suffix = suffix_of(path)
    check_output_folder(path)
    if suffix == ".seg.nrrd":
        if not np.issubdtype(data.array.dtype, np.integer):
            raise UsgenInputError(path, "only an integer label map can be written as a segmentation")
        values = [int(v) for v in np.unique(data.array) if v != 0]
        return write_segmentation(data, path, {v: (f"label {v}", _label_color(v)) for v in values})
    if suffix in VOLUME_WRITE_SUFFIXES:
        return write_volume(data, path)
    raise UsgenInputError(path, f"unknown output type '{suffix}' for a volume (use one of {', '.join(VOLUME_WRITE_SUFFIXES)})")


def _label_color(value: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(value)
    return tuple(float(c) for c in rng.uniform(0.2, 1.0, 3))


__all__ = [
    "bundled_dicom",
    "atomic_path", "atomic_write_bytes", "atomic_write_text", "check_output_folder", "suffix_of",
    "read_cine", "read_any", "read_volume", "read_video", "read_dicom_cine", "read_seq_nrrd",
    "read_segmentation", "write_cine", "write_any", "write_volume", "write_seq_nrrd", "write_dicom_cine",
    "write_video", "write_gif", "write_contact_sheet", "write_segmentation", "is_volume_input",
    "read_plus_sequence", "write_transform_sequence", "write_tracked_cine",
]
