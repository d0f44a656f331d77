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
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import (JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes,
                         ExplicitVRLittleEndian, generate_uid)

from USGenLib import __version__
from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_path
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


def _memmap_pixels(path: Path, ds: Dataset, n: int) -> np.ndarray | None:
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
    shape = (n, ds.Rows, ds.Columns) + ((spp,) if spp > 1 else ())
    if offset + int(np.prod(shape)) > path.stat().st_size:
        raise UsgenInputError(path, "pixel data is truncated")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape)


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


def _check_compressed_frames(path: Path, ds: Dataset, n: int) -> None:
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_compressed:
        return
    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    except Exception as err:
        raise UsgenInputError(path, f"compressed pixel data is corrupt ({_one_line(err)})") from err
    if len(frames) != n:
        raise UsgenInputError(path, f"NumberOfFrames is {n} but the pixel data holds {len(frames)} frames")
    for i, frame in enumerate(frames):
        problem = _frame_problem(syntax, frame)
        if problem:
            raise UsgenInputError(path, f"compressed frame {i + 1} of {n} is corrupt ({problem})")


def _decoded_pixels(path: Path, ds: Dataset, n: int) -> np.ndarray:
    _check_compressed_frames(path, ds, n)
    try:
        arr = ds.pixel_array  # pydicom converts YBR_FULL(_422) to RGB; JPEG 2000 undoes RCT/ICT
    except Exception as err:
        raise UsgenInputError(path, f"pixel data is corrupt or cannot be decoded ({_one_line(err)})") from err
    if n == 1:
        arr = arr[np.newaxis]
    pi = ds.PhotometricInterpretation
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:  # 16-bit LUT entries
            arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif pi == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr if arr.size else arr
    return arr


def read_dicom_cine(path: str | Path) -> Cine:
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, defer_size="64 KB")
    except InvalidDicomError as err:
        raise UsgenInputError(path, "not a DICOM file") from err
    except Exception as err:
        raise UsgenInputError(path, f"DICOM file cannot be parsed ({err})") from err
    if "PixelData" not in ds:
        raise UsgenInputError(path, "DICOM file has no pixel data")
    for key in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if key not in ds:
            raise UsgenInputError(path, f"DICOM file lacks {key}")
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = _memmap_pixels(path, ds, n)
    if frames is None:
        try:
            frames = _decoded_pixels(path, ds, n)
        except UsgenInputError:
            raise
        except Exception as err:
            raise UsgenInputError(path, f"pixel data is truncated or corrupt ({_one_line(err)})") from err
    if frames.shape[0] != n:
        raise UsgenInputError(path, f"NumberOfFrames is {n} but {frames.shape[0]} frames were decoded")

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
    times, times_from = _frame_times(ds, n)
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
    return Cine(frames=frames, spacing=(spacing_xy[0], spacing_xy[1], thickness), origin=origin,
                direction=direction, times=times, meta=meta)


def _as_uint(frames: np.ndarray) -> np.ndarray:
    """8-bit or 16-bit unsigned pixels for DICOM; floats in [0, 1] are scaled to 0..255."""
    if frames.dtype in (np.uint8, np.uint16):
        return frames
    if frames.dtype == np.bool_:
        return frames.astype(np.uint8)
    arr = np.asarray(frames, dtype=np.float64)
    if np.issubdtype(frames.dtype, np.floating) and arr.size and arr.min() >= 0 and arr.max() <= 1:
        arr = arr * 255.0
    hi = 65535 if arr.size and arr.max() > 255 else 255
    return np.clip(np.rint(arr), 0, hi).astype(np.uint16 if hi > 255 else np.uint8)


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def build_us_multiframe(cine: Cine, deidentify: bool = False) -> Dataset:
    """An Ultrasound Multi-frame Image Storage dataset for ``cine`` with new UIDs.

    Patient and study attributes are copied from ``cine.meta`` unless ``deidentify``; the source
    image is referenced in SourceImageSequence. Pixels are written uncompressed.
    """
    frames = _as_uint(np.asarray(cine.frames))
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

    t, h, w = frames.shape[:3]
    ds.Rows, ds.Columns = h, w
    ds.NumberOfFrames = t
    if cine.is_rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    bits = frames.dtype.itemsize * 8
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
    ds.PixelData = np.ascontiguousarray(frames).astype(frames.dtype.newbyteorder("<")).tobytes()
    return ds


def write_dicom_cine(cine: Cine, path: str | Path, deidentify: bool = False) -> Path:
    path = Path(path)
    ds = build_us_multiframe(cine, deidentify=deidentify)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
