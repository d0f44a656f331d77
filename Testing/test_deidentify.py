"""De-identification that tells the truth: BurnedInAnnotation from the source, a warning when the
pixels may hold text, --blackout-text, and no input path in any output."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from USGenLib.io import read_cine, write_dicom_cine
from USGenLib.text_blackout import blackout_text, image_mask
from USGenLib.types import Cine


def sector_cine(frames: int = 8, h: int = 120, w: int = 160, seed: int = 0) -> tuple[Cine, np.ndarray, np.ndarray]:
    """A fan of live speckle (with a dark cyst) among a scanner's overlays: static text, a clock
    that changes every frame, a grey-scale bar. Returns (cine, sector mask, text mask)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w]
    radius, angle = np.hypot(rows - 10, cols - w / 2), np.arctan2(cols - w / 2, rows - 10)
    sector = (radius > 15) & (radius < h - 12) & (np.abs(angle) < np.radians(38))
    cyst = np.hypot(rows - 70, cols - w / 2) < 12
    data = np.zeros((frames, h, w), np.uint8)
    data[:, sector] = rng.integers(40, 220, (frames, int(sector.sum())))
    data[:, sector & cyst] = rng.integers(0, 4, (frames, int((sector & cyst).sum())))
    text = np.zeros((h, w), bool)
    for k in range(6):  # glyph strokes, one pixel wide: a name and a date at the top left
        text[3 + (k % 2) * 8: 10 + (k % 2) * 8, 4 + 5 * k] = True
        text[3 + (k % 2) * 8, 4 + 5 * k: 7 + 5 * k] = True
    data[:, text] = 255
    bar = np.zeros((h, w), bool)
    bar[30:90, w - 6:w - 3] = True
    data[:, 30:90, w - 6:w - 3] = np.linspace(0, 255, 60, dtype=np.uint8)[:, None]
    clock = np.zeros((h, w), bool)
    for t in range(frames):  # a running clock: changes from frame to frame, like speckle
        data[t, h - 9:h - 2, 4 + t] = 200
        clock[h - 9:h - 2, 4 + t] = True
    return Cine(data, spacing=(0.3, 0.3, 1.0), meta={"modality": "US"}), sector, text | bar | clock


def _dicom(tmp_path, burned: str | None, name="src.dcm") -> str:
    cine, _, _ = sector_cine()
    path = write_dicom_cine(cine, tmp_path / name)
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = "Doe^Jane", "MRN-0042"
    if burned is None:
        del ds.BurnedInAnnotation
    else:
        ds.BurnedInAnnotation = burned
    ds.save_as(path)
    return path


@pytest.mark.parametrize("burned,warned", [("YES", True), (None, True), ("NO", False)])
def test_burned_in_annotation_is_copied_and_warned_about(tmp_path, usgen, burned, warned):
    src = _dicom(tmp_path, burned)
    res = usgen("convert", src, tmp_path / "anon.dcm", "--deidentify", "--quiet")
    assert res.code == 0, res.err
    ds = pydicom.dcmread(tmp_path / "anon.dcm")
    assert ds.BurnedInAnnotation == (burned or "YES")
    assert ("usgen: warning:" in res.err and "--blackout-text" in res.err) == warned
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
    assert b"Doe^Jane" not in (tmp_path / "anon.dcm").read_bytes()


def test_image_mask_finds_the_sector_among_overlays():
    cine, sector, text = sector_cine()
    mask = image_mask(cine.frames)
    assert not np.any(mask & text)
    assert (mask & sector).sum() >= 0.97 * sector.sum()
    assert (mask & ~sector).sum() <= 0.03 * sector.sum()
    # One still frame: the image is where it is not black
    still = image_mask(cine.frames[:1])
    assert not np.any(still & text) and (still & sector).sum() >= 0.95 * sector.sum()


def test_blackout_text_then_deidentify_says_no_and_clean_pixels(tmp_path, usgen):
    src = _dicom(tmp_path, "YES")
    res = usgen("convert", src, tmp_path / "clean.dcm", "--deidentify", "--blackout-text", "--quiet")
    assert res.code == 0 and "warning" not in res.err
    _, sector, text = sector_cine()
    out = read_cine(tmp_path / "clean.dcm")
    assert not np.any(out.frames[:, text])
    kept = np.mean(out.frames[:, sector] == sector_cine()[0].frames[:, sector])
    assert kept >= 0.97
    ds = pydicom.dcmread(tmp_path / "clean.dcm")
    assert ds.BurnedInAnnotation == "NO"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113101"]


def test_blackout_keeps_only_the_sector_within_ultrasound_regions_that_fit_the_image():
    cine, sector, _ = sector_cine()
    box = [50, 20, 110, 100]  # x0, y0, x1, y1 inclusive
    cine.meta["us_regions"] = [{"format": 1, "box": box}, {"format": 5, "box": [0, 0, 159, 119]}]
    out = blackout_text(cine)
    assert out.meta["text_blackout"].endswith("within SequenceOfUltrasoundRegions")
    inside = np.zeros((120, 160), bool)
    inside[20:101, 50:111] = True
    assert not np.any(out.frames[:, ~inside])
    assert np.mean(out.frames[:, inside & sector] == cine.frames[:, inside & sector]) >= 0.97
    cine.meta["us_regions"] = [{"format": 1, "box": [84, 31, 595, 414]}]  # written for a larger image
    assert blackout_text(cine).meta["text_blackout"] == "found from the pixels"


def test_no_input_path_in_any_output(tmp_path, usgen):
    import SimpleITK as sitk

    secret = tmp_path / "Doe_Jane_MRN0042"
    secret.mkdir()
    src = _dicom(secret, "NO", name="Doe_Jane_cine.dcm")
    for out in ("o.dcm", "o.seq.nrrd"):
        assert usgen("convert", src, tmp_path / out, "--quiet").code == 0
        assert b"Doe_Jane" not in (tmp_path / out).read_bytes()
    ct = np.full((24, 32, 32), -1000, np.int16)
    ct[4:20, 8:24, 8:24] = 40
    sitk.WriteImage(sitk.GetImageFromArray(ct), str(secret / "Doe_Jane_ct.nrrd"))
    res = usgen("simulate", "--ct", secret / "Doe_Jane_ct.nrrd", "--size", "32x32", "--out", tmp_path / "sim", "--quiet")
    assert res.code == 0, res.err
    for path in (tmp_path / "sim").iterdir():
        assert b"Doe_Jane" not in path.read_bytes(), path.name
    assert json.loads((tmp_path / "sim" / "meta.json").read_text())["volume"]["source"] == "file (path not recorded)"
