"""CT and label volumes through SimpleITK: a DICOM series folder, NIfTI, NRRD, MHA/MHD.

SimpleITK applies RescaleSlope/Intercept, so DICOM CT arrives in HU. Geometry is LPS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from USGenLib.errors import UsgenInputError, refuse_invalid
from USGenLib.io.atomic import atomic_path
from USGenLib.io.nrrdbody import read_nrrd_header
from USGenLib.limits import check_beside, check_declared_size, check_regular, require_memory
from USGenLib.types import Volume

# ITK prints its warnings straight to stderr from C++; a bad file must give one line, so they are
# off (errors still arrive as RuntimeError and become that line).
sitk.ProcessObject.SetGlobalWarningDisplay(False)

LABEL_MAX_VALUES = 64  # a label map holds few distinct values
TISSUE_LABELS = 10  # len(simulation.tissues.TISSUES), not imported: that package loads torch


def _metaimage_data_file(path: Path) -> None:
    """A MetaImage header's ElementDataFile must be LOCAL or a file beside it (see check_beside)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20).decode("latin-1", errors="replace")
    for line in head.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            value = value.strip()
            if value.upper() == "LOCAL":
                return
            if value.upper().startswith("LIST") or "%" in value or len(value.split()) > 1:
                raise UsgenInputError(path, "MetaImage data split over several files is not supported")
            check_beside(path, value)
            return


def _check_file_header(path: Path) -> None:
    """Header-only checks before SimpleITK reads pixels: detached data beside the header, declared
    size within the file and the memory budget."""
    check_regular(path)
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        read_nrrd_header(path)  # checks the data file and the declared size against the file
    elif name.endswith((".mhd", ".mha")):
        _metaimage_data_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise UsgenInputError(path, f"not a readable image volume ({_itk_message(err)})") from None
    declared = int(np.prod(reader.GetSize(), dtype=np.int64)) * reader.GetNumberOfComponents() \
        * sitk.Image([1] * reader.GetDimension(), reader.GetPixelID()).GetSizeOfPixelComponent()
    if not name.endswith((".nrrd", ".nhdr")):  # NRRD was checked exactly above
        check_declared_size(path, declared, path.stat().st_size, "gzip")
    # SimpleITK's array plus the float32 HU copy
    require_memory(path, declared + int(np.prod(reader.GetSize(), dtype=np.int64)) * 4, "the volume")


def _itk_message(err: Exception) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error")[:160]


def _read_image(path: Path) -> sitk.Image:
    if path.is_dir():
        for entry in path.iterdir():  # GDCM opens every file in the folder: no FIFO may hang it
            check_regular(entry, folder_ok=True)
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise UsgenInputError(path, "folder holds no DICOM series")
        # The series with the most slices, when a folder holds several.
        files = max((reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len)
        one = sitk.ImageFileReader()
        one.SetFileName(files[0])
        one.ReadImageInformation()
        require_memory(path, len(files) * int(np.prod(one.GetSize(), dtype=np.int64)) * 8, "the DICOM series")
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        return reader.Execute()
    if not path.exists():
        raise UsgenInputError(path, "file does not exist")
    _check_file_header(path)
    return sitk.ReadImage(str(path))


def volume_kind(arr: np.ndarray) -> str:
    """"labels" for a label map, else "ct". Decided on the values, not the type (CT is often stored
    as int16, label maps as float): a label map holds few distinct whole numbers in 0..255, with 0
    (background) among them or all of them tissue-table labels. A CT of constant 40 HU is neither."""
    if arr.size == 0 or arr.min() < 0 or arr.max() > 255:
        return "ct"
    if np.issubdtype(arr.dtype, np.floating) and np.any(arr != np.round(arr)):
        return "ct"
    values = np.unique(arr)
    if values.size > LABEL_MAX_VALUES:
        return "ct"
    return "labels" if values[0] == 0 or values[-1] < TISSUE_LABELS else "ct"


def read_volume(path: str | Path, kind: str = "auto") -> Volume:
    """Read a 3-D image. ``kind``: "ct", "labels", or "auto" (see ``volume_kind``; CT is in HU)."""
    path = Path(path)
    try:
        img = _read_image(path)
    except UsgenInputError:
        raise
    except RuntimeError as err:
        raise UsgenInputError(path, f"not a readable image volume ({_itk_message(err)})") from err
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UsgenInputError(path, "volume has colour or vector pixels; a CT or label map is scalar")
    if img.GetDimension() == 2:
        img = sitk.JoinSeries(img)
    if img.GetDimension() != 3:
        raise UsgenInputError(path, f"image is {img.GetDimension()}-D; a volume is 3-D")
    arr = sitk.GetArrayFromImage(img)
    if arr.size == 0:
        raise UsgenInputError(path, f"volume is empty (size {list(img.GetSize())})")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise UsgenInputError(path, f"volume contains {int(np.count_nonzero(~np.isfinite(arr)))} NaN or infinite voxels")
    if kind == "auto":
        kind = volume_kind(arr)
    if kind == "ct":
        arr = arr.astype(np.float32, copy=False)
    elif not np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.uint8)  # whole numbers 0..255 (volume_kind), stored as floats
    with refuse_invalid(path):
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
