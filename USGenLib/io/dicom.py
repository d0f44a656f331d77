"""DICOM ultrasound: read single- and multi-frame images as a Cine, write Ultrasound Multi-frame
Image Storage.

Reading handles MONOCHROME1/2, RGB, YBR_FULL(_422), YBR_RCT/ICT (JPEG 2000) and PALETTE COLOR
through pydicom's pixel pipeline, in every transfer syntax ultrasound systems write: JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000 and RLE (decoders from python-gdcm, Pillow,
pylibjpeg-openjpeg and pylibjpeg-rle). Large uncompressed cines are memory-mapped rather than
loaded, so converting them streams frame by frame.
Geometry: spacing from SequenceOfUltrasoundRegions (PhysicalDeltaX/Y, cm -> mm), else
PixelSpacing; frame times from FrameTimeVector, FrameTime, CineRate or RecommendedDisplayFrameRate.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, iter_pixels
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import (JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes,
                         ExplicitVRLittleEndian, generate_uid)

from USGenLib import __version__
from USGenLib.errors import UsgenInputError, refuse_invalid
from USGenLib.io.atomic import atomic_path
from USGenLib.io.frames import FrameSource
from USGenLib.limits import check_regular, require_memory
from USGenLib.progress import progress
from USGenLib.types import Cine

US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# Copied from the source unless --deidentify: who the patient is and which study this belongs to.
PATIENT_KEYWORDS = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                    "OtherPatientIDs", "PatientAddress", "PatientTelephoneNumbers", "EthnicGroup"]
STUDY_KEYWORDS = ["StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                  "ReferringPhysicianName", "StudyDescription", "InstitutionName", "InstitutionAddress",
                  "OperatorsName", "PerformingPhysicianName", "DeviceSerialNumber", "StationName"]


def _ultrasound_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(sx, sy) in mm from the largest 2-D tissue region calibrated in cm, if any."""
    best = None
    for region in ds.get("SequenceOfUltrasoundRegions", []):
        if region.get("PhysicalUnitsXDirection") != 3 or region.get("PhysicalUnitsYDirection") != 3:
            continue  # 3 = cm; other units (s, cm/s) belong to Doppler/M-mode strips
        dx, dy = float(region.get("PhysicalDeltaX", 0)), float(region.get("PhysicalDeltaY", 0))
        if dx <= 0 or dy <= 0:
            continue
        area = ((region.get("RegionLocationMaxX1", 0) - region.get("RegionLocationMinX0", 0))
                * (region.get("RegionLocationMaxY1", 0) - region.get("RegionLocationMinY0", 0)))
        if best is None or area > best[0]:
            best = (area, dx * 10.0, dy * 10.0)
    return None if best is None else (best[1], best[2])


def _regions(ds: Dataset) -> list[dict]:
    """Every ultrasound region's spatial format and pixel box (x0, y0, x1, y1, inclusive)."""
    return [{"format": int(r.get("RegionSpatialFormat", 0)),
             "box": [int(r.get(k, 0)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                               "RegionLocationMaxX1", "RegionLocationMaxY1")]}
            for r in ds.get("SequenceOfUltrasoundRegions", [])]


def burned_in_annotation(meta: dict) -> str:
    """BurnedInAnnotation for a cine written as DICOM: the source's, else YES. An ultrasound
    picture comes from a scanner that draws patient details beside the image unless the source
    says otherwise (simulations and blacked-out cines say NO)."""
    value = str(meta.get("burned_in_annotation") or "").upper()
    return value if value in ("YES", "NO") else "YES"


def _frame_times(ds: Dataset, n: int) -> tuple[np.ndarray, str]:
    if n == 1:
        return np.zeros(1), "single frame"
    ftv = ds.get("FrameTimeVector")
    if ftv is not None and len(ftv) == n:
        inc = np.asarray([float(v) for v in ftv]) / 1000.0
        times = np.cumsum(inc) - inc[0]
        if np.all(np.diff(times) > 0):
            return times, "FrameTimeVector"
    if ds.get("FrameTime") and float(ds.FrameTime) > 0:
        return np.arange(n) * float(ds.FrameTime) / 1000.0, "FrameTime"
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        if ds.get(key) and float(ds.get(key)) > 0:
            return np.arange(n) / float(ds.get(key)), key
    return np.arange(n) / 30.0, "none in file: 30 frames/s assumed"


def _one_line(err: Exception) -> str:
    """pydicom lists each decoder's failure on a line of its own under a heading; the CLI prints one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.strip().endswith(":")]
    return "; ".join(lines)[:300]


def _frame_problem(syntax: str, frame: bytes) -> str | None:
    """What is wrong with one compressed frame's framing, if anything.

    JPEG decoders fill a truncated frame with grey and only print a warning (libjpeg's "premature
    end of data segment"), so a cut-off frame would pass as a picture; its missing end marker
    shows it. RLE decoders check their segment lengths themselves.
    """
    body = frame.rstrip(b"\x00\xff")  # fragments are padded to an even length, by some writers with 0xFF
    if syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        if not body.startswith(b"\xff\xd8"):
            return "no JPEG start-of-image marker"
        if not body.endswith(b"\xff\xd9"):
            return "no JPEG end-of-image marker: the frame is truncated"
    elif syntax in JPEG2000TransferSyntaxes:
        if not (body.startswith(b"\xff\x4f") or body[4:8] == b"jP  "):  # codestream or JP2 file
            return "no JPEG 2000 start-of-codestream marker"
        if not body.endswith(b"\xff\xd9"):
            return "no JPEG 2000 end-of-codestream marker: the frame is truncated"
    return None


def _geometry(ds: Dataset) -> tuple[tuple[float, float, float], str, np.ndarray, np.ndarray]:
    """(spacing, where it came from, origin, direction) from the ultrasound region or image plane."""
    spacing_xy = _ultrasound_spacing(ds)
    spacing_from = "SequenceOfUltrasoundRegions"
    if spacing_xy is None and ds.get("PixelSpacing"):
        spacing_xy = (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]))
        spacing_from = "PixelSpacing"
    if spacing_xy is None:
        spacing_xy, spacing_from = (1.0, 1.0), "none in file: 1 mm assumed"
    thickness = float(ds.get("SliceThickness") or 1.0)
    origin = np.zeros(3)
    direction = np.eye(3)
    if ds.get("ImagePositionPatient") and ds.get("ImageOrientationPatient"):
        origin = np.array([float(v) for v in ds.ImagePositionPatient])
        row, col = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
        direction = np.stack([row, col, np.cross(row, col)], axis=1)
    return (spacing_xy[0], spacing_xy[1], thickness), spacing_from, origin, direction


def _frame_count(path: Path, ds: Dataset) -> int:
    raw = ds.get("NumberOfFrames", 1)
    try:
        n = 1 if raw in (None, "") else int(raw)
    except (TypeError, ValueError):
        raise UsgenInputError(path, f"NumberOfFrames '{raw}' is not a whole number") from None
    if n < 1:
        raise UsgenInputError(path, f"NumberOfFrames is {n}; a cine needs at least one frame")
    for key in ("Rows", "Columns"):
        if int(ds.get(key) or 0) < 1:
            raise UsgenInputError(path, f"{key} is {ds.get(key)}; an image needs at least one row and column")
    if int(ds.get("SamplesPerPixel", 1) or 1) not in (1, 3):
        raise UsgenInputError(path, f"SamplesPerPixel is {ds.get('SamplesPerPixel')} (1 or 3 are supported)")
    if int(ds.BitsAllocated) not in (1, 8, 16, 32):
        raise UsgenInputError(path, f"BitsAllocated is {ds.BitsAllocated} (8, 16 or 32 are supported)")
    return n


def _partial(path: Path, complete: int, n: int, allow_partial: bool) -> int:
    """How many frames to read of a file holding ``complete`` of its ``n`` declared frames."""
    if complete >= n:
        return n
    if complete == 0 or not allow_partial:
        raise UsgenInputError(path, f"truncated or corrupt: holds {complete} whole frames of the {n} it declares"
                                    + (" (--allow-partial keeps those)" if complete else ""))
    return complete


def _memmap_pixels(path: Path, ds: Dataset, n: int, allow_partial: bool) -> np.ndarray | None:
    """A read-only memory map of uncompressed 8-bit grey or interleaved RGB pixel data."""
    if (str(ds.file_meta.TransferSyntaxUID) not in _UNCOMPRESSED or ds.BitsAllocated != 8
            or ds.PhotometricInterpretation not in ("RGB", "MONOCHROME2")
            or ds.get("PlanarConfiguration", 0) != 0):
        return None
    elem = ds.get_item("PixelData", keep_deferred=True)
    offset = getattr(elem, "value_tell", None)
    if offset is None:
        return None
    spp = int(ds.SamplesPerPixel)
    frame_shape = (ds.Rows, ds.Columns) + ((spp,) if spp > 1 else ())
    frame_bytes = int(np.prod(frame_shape))
    n = _partial(path, (path.stat().st_size - offset) // frame_bytes, n, allow_partial)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(n,) + frame_shape)


def _is_encapsulated(ds: Dataset) -> bool:
    return str(ds.file_meta.TransferSyntaxUID) not in _UNCOMPRESSED and ds.file_meta.TransferSyntaxUID.is_encapsulated


def _complete_frames(path: Path, ds: Dataset, n: int) -> int:
    """How many of the n frames the file holds whole: encapsulated frames must pass
    ``_frame_problem`` (start and end markers, which a cut or overwritten codestream lacks);
    uncompressed ones must fit in the file."""
    if _is_encapsulated(ds):
        complete = 0
        try:
            for frame in generate_frames(ds.PixelData, number_of_frames=n):
                if _frame_problem(ds.file_meta.TransferSyntaxUID, frame):
                    break
                complete += 1
        except Exception:  # fragments cut short: count what was whole before
            pass
        return complete
    elem = ds.get_item("PixelData", keep_deferred=True)
    frame_bytes = ds.Rows * ds.Columns * int(ds.SamplesPerPixel) * ds.BitsAllocated // 8
    available = path.stat().st_size - (getattr(elem, "value_tell", None) or 0)
    return int(min(available, elem.length if elem.length not in (None, 0xFFFFFFFF) else available) // max(frame_bytes, 1))


def _decoded_frames(path: Path, ds: Dataset, n: int) -> Iterator[np.ndarray]:
    """Frames 0..n-1 through pydicom's pixel pipeline (YBR to RGB, JPEG 2000 RCT/ICT undone),
    palette colours expanded, one at a time."""
    try:
        for arr in iter_pixels(ds, indices=range(n)):
            if ds.PhotometricInterpretation == "PALETTE COLOR":
                arr = apply_color_lut(arr, ds)
                if arr.dtype != np.uint8:  # 16-bit LUT entries
                    arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
            yield arr
    except UsgenInputError:
        raise
    except Exception as err:
        raise UsgenInputError(path, f"pixel data is corrupt or cannot be decoded ({_one_line(err)})") from None


def _decoded_shape(ds: Dataset, n: int) -> tuple[tuple[int, ...], np.dtype]:
    color = int(ds.SamplesPerPixel) == 3 or ds.PhotometricInterpretation == "PALETTE COLOR"
    shape = (n, int(ds.Rows), int(ds.Columns)) + ((3,) if color else ())
    if ds.PhotometricInterpretation == "PALETTE COLOR" or ds.BitsAllocated <= 8:
        return shape, np.dtype(np.uint8)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return shape, np.dtype(f"{'i' if signed else 'u'}{ds.BitsAllocated // 8}")


def _read_frames(path: Path, ds: Dataset, n: int, lazy: bool, allow_partial: bool):
    frames = _memmap_pixels(path, ds, n, allow_partial)
    if frames is not None:
        return frames
    n = _partial(path, _complete_frames(path, ds, n), n, allow_partial)
    shape, dtype = _decoded_shape(ds, n)
    mono1 = ds.PhotometricInterpretation == "MONOCHROME1"
    if lazy and not mono1:  # MONOCHROME1 inverts over the whole clip's range
        source = FrameSource(shape, dtype, lambda: _decoded_frames(path, ds, n), path)
        source[0]  # decode one frame now: an undecodable file fails here, not in a writer
        return source
    require_memory(path, np.prod(shape) * dtype.itemsize * (2 if mono1 else 1), "the decoded frames")
    arr = None
    for t, frame in enumerate(_decoded_frames(path, ds, n)):
        if arr is None:
            arr = np.empty((n,) + frame.shape, frame.dtype)
        if frame.shape != arr.shape[1:]:
            raise UsgenInputError(path, f"frame {t} decodes to {frame.shape}, not {arr.shape[1:]}")
        arr[t] = frame
    if mono1:
        arr = arr.max() + arr.min() - arr
    return arr


def read_dicom_cine(path: str | Path, lazy: bool = False, allow_partial: bool = False) -> Cine:
    """Read a single- or multi-frame DICOM image as a Cine. ``lazy``: compressed frames are decoded
    on demand (a FrameSource); uncompressed 8-bit frames are memory-mapped either way.
    ``allow_partial``: a truncated file gives the frames it holds whole, else it is refused."""
    path = check_regular(path)
    try:
        ds = pydicom.dcmread(path, defer_size="64 KB")
    except InvalidDicomError as err:
        raise UsgenInputError(path, "not a DICOM file") from err
    except Exception as err:
        raise UsgenInputError(path, f"DICOM file cannot be parsed ({str(err).splitlines()[0][:160] if str(err) else type(err).__name__})") from err
    if "PixelData" not in ds:
        raise UsgenInputError(path, "DICOM file has no pixel data")
    for key in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if key not in ds:
            raise UsgenInputError(path, f"DICOM file lacks {key}")
    n = _frame_count(path, ds)
    frames = _read_frames(path, ds, n, lazy, allow_partial)
    n = frames.shape[0]

    try:  # malformed numbers in the geometry attributes are the file's fault: one line
        spacing, spacing_from, origin, direction = _geometry(ds)
        times, times_from = _frame_times(ds, n)
    except (ValueError, TypeError, IndexError) as err:
        raise UsgenInputError(path, f"geometry or timing attributes are malformed ({err})") from None
    meta = {
        "source": str(path),
        "format": "dicom",
        "modality": str(ds.get("Modality", "")),
        "photometric": str(ds.PhotometricInterpretation),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID.name) if "TransferSyntaxUID" in ds.file_meta else "",
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "spacing_from": spacing_from,
        "times_from": times_from,
        "patient": {k: str(ds.get(k)) for k in PATIENT_KEYWORDS if ds.get(k) not in (None, "")},
        "study": {k: str(ds.get(k)) for k in STUDY_KEYWORDS if ds.get(k) not in (None, "")},
        "manufacturer": str(ds.get("Manufacturer", "")),
        "burned_in_annotation": str(ds.get("BurnedInAnnotation", "")),
        "us_regions": _regions(ds),
    }
    with refuse_invalid(path):
        return Cine(frames=frames, spacing=spacing, origin=origin, direction=direction, times=times, meta=meta)


def _uint_plan(frames, source=None) -> tuple[np.dtype, Callable[[np.ndarray], np.ndarray]]:
    """The unsigned type DICOM gets and the per-frame conversion to it, decided on the whole clip:
    uint8/uint16 pass, booleans become 0/1, floats in [0, 1] are scaled to 0..255, anything else is
    rounded and clipped to 0..255 or 0..65535. NaN or infinite pixels have no integer value: refused."""
    dtype = np.dtype(frames.dtype)
    if dtype in (np.uint8, np.uint16):
        return dtype, np.asarray
    if dtype == np.bool_:
        return np.dtype(np.uint8), lambda f: np.asarray(f, dtype=np.uint8)
    lo, hi = np.inf, -np.inf
    for t in range(frames.shape[0]):  # one pass, a frame at a time
        f = np.asarray(frames[t], dtype=np.float64)
        if not np.all(np.isfinite(f)):
            raise UsgenInputError(source, f"frame {t} has NaN or infinite pixel values, which DICOM cannot store")
        lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
    scale = 255.0 if np.issubdtype(dtype, np.floating) and lo >= 0 and hi <= 1 else 1.0
    top = 65535 if hi * scale > 255 else 255
    out = np.dtype(np.uint16 if top > 255 else np.uint8)
    return out, lambda f: np.clip(np.rint(np.asarray(f, dtype=np.float64) * scale), 0, top).astype(out)


def _as_uint(frames: np.ndarray) -> np.ndarray:
    """8-bit or 16-bit unsigned pixels for DICOM (see ``_uint_plan``)."""
    dtype, convert = _uint_plan(frames)
    return convert(frames)


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def build_us_multiframe(cine: Cine, deidentify: bool = False, pixel_dtype: np.dtype | None = None) -> Dataset:
    """An Ultrasound Multi-frame Image Storage dataset for ``cine`` with new UIDs.

    Patient and study attributes are copied from ``cine.meta`` unless ``deidentify``; the source
    image is referenced in SourceImageSequence. Pixels are written uncompressed. With
    ``pixel_dtype`` the dataset describes pixels of that type but holds no PixelData (the caller
    streams it in).
    """
    frames = None
    if pixel_dtype is None:
        frames = _as_uint(np.asarray(cine.frames))
        pixel_dtype = frames.dtype
    now = _dt.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"USGEN_{__version__}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.Manufacturer = "USGen"
    ds.SoftwareVersions = __version__
    ds.SeriesDescription = "USGen " + str(cine.meta.get("description", "derived cine"))[:50]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = burned_in_annotation(cine.meta)
    ds.ConversionType = "WSD"

    patient = {} if deidentify else dict(cine.meta.get("patient", {}))
    study = {} if deidentify else dict(cine.meta.get("study", {}))
    for key, value in {**patient, **study}.items():
        setattr(ds, key, value)
    ds.PatientName = patient.get("PatientName", "Anonymous" if deidentify else "")
    ds.PatientID = patient.get("PatientID", "")
    ds.StudyInstanceUID = study.get("StudyInstanceUID") or generate_uid()
    if deidentify:
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        method = ["USGen: patient and study identifiers removed", "dates removed, new UIDs"]  # LO: 64 chars each
        profile = [codes.DCM.BasicApplicationConfidentialityProfile]
        if cine.meta.get("text_blackout"):
            method.append("pixels outside the ultrasound image blacked out")
            profile.append(codes.DCM.CleanPixelDataOption)
        ds.DeidentificationMethod = method
        ds.DeidentificationMethodCodeSequence = Sequence([_code_item(code) for code in profile])
    elif cine.meta.get("sop_instance_uid"):
        src = Dataset()
        src.ReferencedSOPClassUID = cine.meta.get("sop_class_uid") or US_MULTIFRAME_STORAGE
        src.ReferencedSOPInstanceUID = cine.meta["sop_instance_uid"]
        ds.SourceImageSequence = Sequence([src])
        ds.DerivationDescription = "Converted by USGen"

    t, h, w = cine.num_frames, cine.height, cine.width
    ds.Rows, ds.Columns = h, w
    ds.NumberOfFrames = t
    if cine.is_rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    bits = np.dtype(pixel_dtype).itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"

    # Geometry: the ultrasound calibration region (cm), plus the image plane for exact round trips.
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = w - 1, h - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = float(cine.spacing[0]) / 10.0
    region.PhysicalDeltaY = float(cine.spacing[1]) / 10.0
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.SliceThickness = f"{cine.spacing[2]:.10g}"
    ds.ImagePositionPatient = [f"{v:.10g}" for v in cine.origin]
    ds.ImageOrientationPatient = [f"{v:.10g}" for v in np.concatenate([cine.direction[:, 0], cine.direction[:, 1]])]

    if t > 1:
        dt_ms = np.diff(cine.times) * 1000.0
        if np.allclose(dt_ms, dt_ms[0], rtol=1e-6, atol=1e-9):
            ds.FrameTime = f"{dt_ms[0]:.10g}"
            ds.FrameIncrementPointer = 0x00181063
        else:
            ds.FrameTimeVector = ["0"] + [f"{v:.10g}" for v in dt_ms]
            ds.FrameIncrementPointer = 0x00181065
        ds.CineRate = int(round(cine.fps or 0))
    if frames is not None:
        ds.PixelData = np.ascontiguousarray(frames).astype(frames.dtype.newbyteorder("<")).tobytes()
    return ds


def write_dicom_cine(cine: Cine, path: str | Path, deidentify: bool = False) -> Path:
    """Write an Ultrasound Multi-frame DICOM. The pixels go frame by frame into an anonymous
    temporary file beside the output, which pydicom then copies into the DICOM in chunks (a
    buffered PixelData), so a long clip never sits in memory twice, or at all when read lazily."""
    path = Path(path)
    dtype, convert = _uint_plan(cine.frames, cine.meta.get("source"))
    ds = build_us_multiframe(cine, deidentify=deidentify, pixel_dtype=dtype)
    with atomic_path(path) as tmp, tempfile.TemporaryFile(dir=tmp.parent, prefix=".usgen-pixels-") as spool:
        with progress(cine.num_frames, "write " + path.name) as rep:
            for t in range(cine.num_frames):
                spool.write(np.ascontiguousarray(convert(cine.frames[t])).astype(dtype.newbyteorder("<")).tobytes())
                rep.update(1)
        spool.seek(0)
        ds.PixelData = spool
        ds.save_as(tmp, enforce_file_format=True)
    return path


PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def bundled_dicom(name: str) -> Path:
    """Path of a DICOM shipped inside pydicom's wheel (never downloaded)."""
    path = PYDICOM_TEST_FILES / name
    if not path.exists():
        raise UsgenInputError(path, "pydicom's bundled test file is missing (reinstall pydicom)")
    return path
