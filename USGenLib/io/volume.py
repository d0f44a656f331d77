"""CT and label volumes through SimpleITK: a DICOM series folder, NIfTI, NRRD, MHA/MHD.

SimpleITK applies RescaleSlope/Intercept, so DICOM CT arrives in HU. Geometry is LPS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path
from USGenLib.types import Volume

def _read_image(path: Path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise UsgenInputError(path, "folder holds no DICOM series")
        # The series with the most slices, when a folder holds several.
        files = max((reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len)
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        return reader.Execute()
    if not path.exists():
        raise UsgenInputError(path, "file does not exist")
    return sitk.ReadImage(str(path))


def read_volume(path: str | Path, kind: str = "auto") -> Volume:
    """Read a 3-D image. ``kind``: "ct", "labels", or "auto" (integers with <= 255 distinct
    non-negative values are labels; everything else is CT in HU)."""
    path = Path(path)
    try:
        img = _read_image(path)
    except UsgenInputError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise UsgenInputError(path, f"not a readable image volume ({first[:160]})") from err
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UsgenInputError(path, "volume has colour or vector pixels; a CT or label map is scalar")
    if img.GetDimension() == 2:
        img = sitk.JoinSeries(img)
    if img.GetDimension() != 3:
        raise UsgenInputError(path, f"image is {img.GetDimension()}-D; a volume is 3-D")
    arr = sitk.GetArrayFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise UsgenInputError(path, f"volume contains {int(np.count_nonzero(~np.isfinite(arr)))} NaN or infinite voxels")
    if kind == "auto":
        kind = "ct"
        if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 255:
            kind = "labels" if np.unique(arr).size <= 64 else "ct"
    if kind == "ct":
        arr = arr.astype(np.float32, copy=False)
    return Volume(array=arr, spacing=img.GetSpacing(), origin=img.GetOrigin(),
                  direction=np.asarray(img.GetDirection()).reshape(3, 3), kind=kind,
                  meta={"source": str(path), "format": "volume"})


def volume_to_image(volume: Volume) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    img.SetSpacing([float(v) for v in volume.spacing])
    img.SetOrigin([float(v) for v in volume.origin])
    img.SetDirection([float(v) for v in volume.direction.reshape(-1)])
    return img


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write .nrrd, .nii(.gz), .mha or .mhd (compressed), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(volume_to_image(volume), str(tmp), useCompression=True)
    return path
