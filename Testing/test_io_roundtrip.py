"""Round trips through every writer: pixels, spacing, origin, direction and frame times come back."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from conftest import make_cine
from USGenLib.io import (read_any, read_cine, read_segmentation, read_volume, write_any, write_cine,
                         write_segmentation, write_volume)
from USGenLib.types import Volume


def assert_same_geometry(a, b, tol=1e-12):
    assert np.allclose(a.spacing, b.spacing, atol=tol, rtol=0)
    assert np.allclose(a.origin, b.origin, atol=tol, rtol=0)
    assert np.allclose(a.direction, b.direction, atol=tol, rtol=0)


@pytest.mark.parametrize("rgb,dtype", [(False, np.uint8), (False, np.uint16), (False, np.float32), (True, np.uint8)])
@pytest.mark.parametrize("ending", [".seq.nrrd", ".nrrd"])
def test_seq_nrrd_round_trip_is_exact(tmp_path, rgb, dtype, ending):
    cine = make_cine(rgb=rgb, dtype=dtype)
    back = read_cine(write_cine(cine, tmp_path / f"c{ending}"))
    assert back.frames.dtype == cine.frames.dtype
    assert np.array_equal(back.frames, cine.frames)
    assert_same_geometry(back, cine, tol=1e-12)  # spacing * direction, then split again: last-bit rounding
    assert np.array_equal(back.times, cine.times)


@pytest.mark.parametrize("rgb", [False, True])
def test_dicom_round_trip(tmp_path, rgb):
    cine = make_cine(rgb=rgb)
    back = read_cine(write_cine(cine, tmp_path / "c.dcm"))
    assert np.array_equal(back.frames, cine.frames)
    assert np.array_equal(back.spacing[:2], cine.spacing[:2])  # PhysicalDeltaX/Y are binary doubles
    assert_same_geometry(back, cine, tol=1e-9)  # DS text keeps 10 significant digits
    assert back.times == pytest.approx(cine.times, abs=1e-9)
    assert back.meta["times_from"] == "FrameTimeVector"


def test_dicom_uniform_frames_use_frame_time(tmp_path):
    cine = make_cine(uniform_times=True)
    ds = pydicom.dcmread(write_cine(cine, tmp_path / "c.dcm"))
    assert float(ds.FrameTime) == pytest.approx(40.0)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
    assert read_cine(tmp_path / "c.dcm").times == pytest.approx(cine.times, abs=1e-12)


def test_dicom_from_real_cine_gets_new_uids_and_references_source(dicoms, tmp_path):
    src_ds = pydicom.dcmread(dicoms["ybr_color"])
    cine = read_cine(dicoms["ybr_color"])
    ds = pydicom.dcmread(write_cine(cine, tmp_path / "echo.dcm"))
    assert ds.SOPInstanceUID != src_ds.SOPInstanceUID and ds.SeriesInstanceUID != src_ds.SeriesInstanceUID
    assert ds.StudyInstanceUID == src_ds.StudyInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src_ds.SOPInstanceUID
    assert ds.PatientName == src_ds.PatientName
    back = read_cine(tmp_path / "echo.dcm")
    assert np.array_equal(back.frames, cine.frames)
    assert back.spacing == pytest.approx(cine.spacing)
    assert back.times == pytest.approx(cine.times, abs=1e-9)


def test_deidentify_strips_patient_identifiers(dicoms, tmp_path, usgen):
    src_ds = pydicom.dcmread(dicoms["ybr_color"])
    assert str(src_ds.PatientName)  # the source does identify someone
    res = usgen("convert", dicoms["ybr_color"], tmp_path / "anon.dcm", "--deidentify", "--quiet")
    assert res.code == 0
    ds = pydicom.dcmread(tmp_path / "anon.dcm")
    assert str(ds.PatientName) == "Anonymous" and ds.PatientID == ""
    assert ds.PatientIdentityRemoved == "YES"
    for key in ("PatientBirthDate", "InstitutionName", "AccessionNumber", "ReferringPhysicianName",
                "SourceImageSequence"):
        assert key not in ds
    assert ds.StudyInstanceUID != src_ds.StudyInstanceUID
    assert str(src_ds.PatientName).encode() not in (tmp_path / "anon.dcm").read_bytes()


@pytest.mark.parametrize("rgb", [False, True])
def test_avi_is_lossless_with_frame_rate(tmp_path, rgb):
    cine = make_cine(rgb=rgb, uniform_times=True, h=30, w=42)
    back = read_cine(write_cine(cine, tmp_path / "c.avi"))
    assert np.array_equal(back.frames, cine.frames)
    assert back.times == pytest.approx(cine.times, abs=1e-9)


def test_mp4_preview_keeps_frames_size_and_rate(tmp_path):
    # Smooth content: H.264 is lossy, a preview should still look like its source.
    t = np.arange(8)[:, None, None]
    y, x = np.mgrid[0:47, 0:63]
    frames = (127 + 100 * np.sin(x / 9.0 + t / 3.0) * np.cos(y / 7.0)).astype(np.uint8)
    cine = make_cine(frames=8, h=47, w=63, uniform_times=True).with_frames(frames)
    back = read_cine(write_cine(cine, tmp_path / "c.mp4"))
    assert back.frames.shape == (8, 48, 64)  # padded to even size for yuv420p
    assert np.abs(back.frames[:, :47, :63].astype(int) - frames).mean() < 3
    assert back.fps == pytest.approx(25.0)


def test_gif_keeps_grey_pixels_and_timing(tmp_path):
    cine = make_cine(uniform_times=True)
    path = write_cine(cine, tmp_path / "c.gif")
    with Image.open(path) as im:
        assert im.n_frames == cine.num_frames
        frames = []
        for n in range(im.n_frames):
            im.seek(n)
            frames.append(np.asarray(im.convert("L")))
            assert im.info["duration"] == 40
    assert np.array_equal(np.stack(frames), cine.frames)


def test_contact_sheet_tiles_frames_and_cines(tmp_path, dicoms):
    from USGenLib.io import write_contact_sheet

    echo, doppler = read_cine(dicoms["ybr_color"]), read_cine(dicoms["rgb_color"])
    path = write_contact_sheet([echo, doppler], tmp_path / "sheet.png", frames_per_row=5, tile_height=100)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[0] == 2 * (100 + 16)
    tile_w = round(100 * 320 / 240) + 4
    assert sheet.shape[1] == 5 * tile_w
    # Second row shows the Doppler image: orange pixels in its first tile, grey echo rows above.
    row2 = sheet[118:216, :tile_w].astype(int)
    assert np.any((row2[..., 0] > 200) & (row2[..., 2] < 60))


@pytest.mark.parametrize("ending", [".nrrd", ".nii.gz", ".mha"])
def test_volume_round_trip(tmp_path, ending):
    arr = np.random.default_rng(0).normal(0, 300, (6, 7, 8)).astype(np.float32)
    c, s = np.cos(0.2), np.sin(0.2)
    vol = Volume(arr, spacing=(0.7, 0.8, 2.5), origin=(-100.0, 50.5, 12.0),
                 direction=[[c, 0, s], [0, 1, 0], [-s, 0, c]])
    back = read_volume(write_volume(vol, tmp_path / f"v{ending}"), kind="ct")
    assert np.array_equal(back.array, arr)
    assert_same_geometry(back, vol, tol=1e-5 if ending == ".nii.gz" else 1e-9)


def test_segmentation_round_trip_through_slicerio(tmp_path):
    labels = np.zeros((4, 10, 12), dtype=np.uint8)
    labels[1:3, 2:5, 3:7] = 1
    labels[2:4, 6:9, 5:11] = 3
    vol = Volume(labels, spacing=(0.5, 0.6, 2.0), origin=(1.0, 2.0, 3.0), kind="labels")
    table = {1: ("liver", (0.8, 0.4, 0.3)), 3: ("kidney", (0.2, 0.6, 0.9))}
    path = write_segmentation(vol, tmp_path / "s.seg.nrrd", table)
    back, back_table = read_segmentation(path)
    assert np.array_equal(back.array, labels)
    assert_same_geometry(back, vol, tol=1e-9)
    assert back_table == {1: ("liver", pytest.approx((0.8, 0.4, 0.3))), 3: ("kidney", pytest.approx((0.2, 0.6, 0.9)))}
    # The generic writer names the labels itself.
    write_any(vol, tmp_path / "auto.seg.nrrd")
    assert np.array_equal(read_any(tmp_path / "auto.seg.nrrd").array, labels)


def test_previews_make_masks_visible_and_keep_images():
    from USGenLib.io.video import to_uint8

    mask = np.zeros((2, 4, 4), np.uint8)
    mask[:, 1:3, 1:3] = 1
    assert to_uint8(mask).max() == 255 and to_uint8(mask).min() == 0
    image = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    assert np.array_equal(to_uint8(image), image)
    att = np.linspace(0, 1, 32, dtype=np.float32).reshape(1, 4, 8)
    assert to_uint8(att)[0, 0, 0] == 0 and to_uint8(att)[0, -1, -1] == 255
