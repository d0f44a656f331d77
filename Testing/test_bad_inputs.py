"""Bad input: one line naming the file and the problem, exit code 2, and no output file."""

from __future__ import annotations


import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import files_in


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def assert_clean_failure(res, name_in_message: str, out_folder, problem: str):
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("usgen: error: ")
    assert name_in_message in lines[0] and problem in lines[0], lines[0]
    assert files_in(out_folder) == []


def test_truncated_uncompressed_dicom(dicoms, tmp_path, out, usgen):
    bad = tmp_path / "truncated.dcm"
    bad.write_bytes(dicoms["rgb_color"].read_bytes()[:100_000])
    assert_clean_failure(usgen("convert", bad, out / "x.seq.nrrd"), "truncated.dcm", out, "truncated")


def test_truncated_jpeg_dicom(dicoms, tmp_path, out, usgen):
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(dicoms["ybr_color"].read_bytes()[:60_000])
    res = usgen("convert", bad, out / "x.seq.nrrd")
    assert_clean_failure(res, "cut.dcm", out, "")
    assert "truncated" in res.err or "decoded" in res.err or "corrupt" in res.err


def test_text_file_named_dcm(tmp_path, out, usgen):
    bad = tmp_path / "notes.dcm"
    bad.write_text("patient notes, not an image\n" * 20)
    assert_clean_failure(usgen("convert", bad, out / "x.seq.nrrd"), "notes.dcm", out, "not a DICOM file")


def test_dicom_without_pixel_data(dicoms, tmp_path, out, usgen):
    ds = pydicom.dcmread(dicoms["rgb_color"])
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    assert_clean_failure(usgen("convert", tmp_path / "nopixels.dcm", out / "x.seq.nrrd"), "nopixels.dcm", out,
                         "no pixel data")


def test_empty_folder(tmp_path, out, usgen):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(usgen("convert", empty, out / "x.nrrd"), "empty", out, "folder is empty")
    assert usgen("info", empty).code == 2


def test_volume_full_of_nan(tmp_path, out, usgen):
    img = sitk.GetImageFromArray(np.full((4, 5, 6), np.nan, dtype=np.float32))
    sitk.WriteImage(img, str(tmp_path / "nan.mha"))
    assert_clean_failure(usgen("convert", tmp_path / "nan.mha", out / "x.nrrd"), "nan.mha", out, "NaN")


def test_unknown_extensions(dicoms, tmp_path, out, usgen):
    odd = tmp_path / "scan.xyz"
    odd.write_bytes(b"\0" * 256)
    assert_clean_failure(usgen("convert", odd, out / "x.seq.nrrd"), "scan.xyz", out, "unknown file type")
    assert_clean_failure(usgen("convert", dicoms["rgb_color"], out / "x.xyz"), "x.xyz", out, "unknown output type")


def test_missing_input(tmp_path, out, usgen):
    assert_clean_failure(usgen("info", tmp_path / "nothere.dcm"), "nothere.dcm", out, "does not exist")


def test_unwritable_output_folder(dicoms, tmp_path, usgen):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    res = usgen("convert", dicoms["rgb_color"], not_a_folder / "x.seq.nrrd")
    assert res.code == 2 and "file.txt" in res.err and "not a folder" in res.err
    # /proc/self refuses new files even for root.
    res = usgen("convert", dicoms["rgb_color"], "/proc/self/usgen.seq.nrrd")
    assert res.code == 2 and "/proc/self" in res.err
    assert not (tmp_path / "file.txt" / "x.seq.nrrd").exists()


def test_failed_write_leaves_no_partial_file(dicoms, out, monkeypatch):
    """A writer that dies half way (disk full) leaves neither the file nor its temporary."""
    import USGenLib.io.seqnrrd as seqnrrd
    from USGenLib.errors import UsgenInputError
    from USGenLib.io import read_cine, write_cine

    cine = read_cine(dicoms["ybr_color"])
    real = seqnrrd.zlib.compressobj

    class Failing:
        def __init__(self, *a):
            self.inner, self.calls = real(*a), 0

        def compress(self, buf):
            self.calls += 1
            if self.calls == 10:
                raise OSError(28, "No space left on device")
            return self.inner.compress(buf)

        def flush(self):
            return self.inner.flush()

    monkeypatch.setattr(seqnrrd.zlib, "compressobj", Failing)
    with pytest.raises(UsgenInputError, match="No space left"):
        write_cine(cine, out / "echo.seq.nrrd")
    assert files_in(out) == []


def test_json_mode_reports_the_error_as_a_json_line(tmp_path, out, usgen):
    bad = tmp_path / "notes.dcm"
    bad.write_text("hello")
    res = usgen("convert", bad, out / "x.seq.nrrd", "--progress-json")
    assert res.code == 2
    assert res.json_lines()[-1]["error"].endswith("notes.dcm: not a DICOM file")
