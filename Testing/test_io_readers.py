"""Readers on real ultrasound and CT DICOMs bundled with pydicom: shapes, colours, geometry, times."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from USGenLib.cfd import color_flow_mask, has_color_flow
from USGenLib.io import read_any, read_cine, read_volume


def test_echo_cine_is_30_grey_frames_with_region_spacing_and_frame_time(dicoms):
    cine = read_cine(dicoms["ybr_color"])
    assert cine.frames.shape == (30, 240, 320, 3)
    # YBR_FULL_422 decoded to RGB: the echo is grey; chroma subsampling leaves small fringes only.
    f = cine.frames.astype(int)
    chroma = f.max(-1) - f.min(-1)
    assert np.median(chroma) <= 1 and np.percentile(chroma, 99) <= 25
    assert f.mean() > 5 and f.max() >= 200  # bright tissue, not a failed decode
    # PhysicalDeltaX 0.0510497 cm -> 0.510497 mm; FrameTime 33.333 ms.
    assert cine.spacing[:2] == pytest.approx([0.510497, 0.510497], abs=1e-6)
    assert np.diff(cine.times) == pytest.approx(np.full(29, 0.033333), abs=1e-6)
    assert cine.meta["times_from"] == "FrameTime"
    assert not has_color_flow(cine.frames)


@pytest.mark.parametrize("name", ["rgb_color", "jpeg2k"])
def test_power_doppler_has_orange_red_flow_pixels(dicoms, name):
    cine = read_cine(dicoms[name])
    assert cine.num_frames == 1 and cine.is_rgb
    mask = color_flow_mask(cine.frames)
    assert 0.02 < mask.mean() < 0.15
    r, g, b = cine.frames[mask].astype(float).mean(axis=0)
    assert r > 180 and r > g + 50 and g > b + 50  # hot map: red/orange/yellow, no blue
    assert has_color_flow(cine.frames)
    # Outside the flow the image is grey B-mode.
    grey = cine.frames[0][~mask[0]].astype(int)
    assert np.mean(grey.max(-1) - grey.min(-1) < 30) > 0.97


def test_rgb_and_jpeg2k_versions_show_the_same_image(dicoms):
    small = read_cine(dicoms["rgb_color"]).frames[0].astype(float)
    big = read_cine(dicoms["jpeg2k"]).frames[0].astype(float)
    assert big.shape == (480, 640, 3)
    # The JPEG 2000 file is the same scan at twice the size: colours agree after 2x2 averaging.
    down = big.reshape(240, 2, 320, 2, 3).mean(axis=(1, 3))
    assert np.abs(down - small).mean() < 12


def test_palette_colour_is_expanded_through_the_lut(dicoms):
    cine = read_cine(dicoms["palette"])
    assert cine.frames.shape == (1, 350, 800, 3) and cine.frames.dtype == np.uint8
    ds = pydicom.dcmread(dicoms["palette"])
    index = ds.pixel_array
    lut = pydicom.pixels.apply_color_lut(index, ds)
    expected = (lut.astype(float) / 257).round() if lut.dtype != np.uint8 else lut
    assert np.array_equal(cine.frames[0], expected.astype(np.uint8))
    # The scanner's header bar is blue, the B-mode sector grey.
    header = cine.frames[0, 5:15, 300:400].reshape(-1, 3).astype(int).mean(0)
    assert header[2] > header[0] + 30
    assert cine.spacing[0] == pytest.approx(0.2622878766, abs=1e-6)
    assert not has_color_flow(cine.frames)


def test_ct_dicom_series_folder_reads_in_hu_with_geometry(dicoms, tmp_path):
    src = pydicom.dcmread(dicoms["CT_small"])
    row, col = np.array([float(v) for v in src.ImageOrientationPatient]).reshape(2, 3)
    normal = np.cross(row, col)
    for k in range(3):
        ds = pydicom.dcmread(dicoms["CT_small"])
        ds.ImagePositionPatient = [float(v) for v in np.array([float(v) for v in src.ImagePositionPatient]) + 5.0 * k * normal]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.save_as(tmp_path / f"slice{k}.dcm")
    vol = read_volume(tmp_path)
    assert vol.kind == "ct" and vol.array.shape == (3, 128, 128)
    hu = src.pixel_array.astype(float) * float(src.RescaleSlope) + float(src.RescaleIntercept)
    assert np.allclose(vol.array[0], hu)
    assert vol.spacing == pytest.approx([0.661468, 0.661468, 5.0], abs=1e-5)
    assert vol.origin == pytest.approx([float(v) for v in src.ImagePositionPatient], abs=1e-4)
    assert read_any(tmp_path).array.shape == (3, 128, 128)


def test_grey_avi_reads_as_grey_with_frame_rate(tmp_path):
    from USGenLib.io import write_cine
    from USGenLib.types import Cine

    frames = np.random.default_rng(1).integers(0, 256, (12, 112, 112), dtype=np.uint8)
    write_cine(Cine(frames=frames, times=np.arange(12) / 50.0), tmp_path / "echo.avi")
    cine = read_cine(tmp_path / "echo.avi")
    assert cine.frames.shape == (12, 112, 112)  # EchoNet-style grey video stays grey
    assert np.array_equal(cine.frames, frames)
    assert cine.fps == pytest.approx(50.0)


def test_old_and_new_slicer_sequence_conventions_read_alike(tmp_path):
    import nrrd

    frames = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)  # (T, H, W)
    common = {"type": "unsigned char", "space": "left-posterior-superior", "encoding": "raw",
              "space origin": np.array([1.0, 2.0, 3.0])}
    # Old Sequences-extension layout: list axis first.
    old = dict(common, **{"kinds": ["list", "domain", "domain", "domain"],
                          "space directions": np.array([[np.nan] * 3, [0.5, 0, 0], [0, 0.5, 0], [0, 0, 1.0]]),
                          "axis 0 index type": "numeric", "axis 0 index values": "0 0.1 0.25"})
    nrrd.write(str(tmp_path / "old.seq.nrrd"), frames.transpose(0, 2, 1)[:, :, :, None], old,
               custom_field_map={"axis 0 index type": "string", "axis 0 index values": "string"})
    new = dict(common, **{"kinds": ["domain", "domain", "domain", "list"],
                          "space directions": np.array([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1.0], [np.nan] * 3]),
                          "axis 3 index type": "numeric", "axis 3 index values": "0 0.1 0.25"})
    nrrd.write(str(tmp_path / "new.seq.nrrd"), frames.transpose(2, 1, 0)[:, :, None, :], new,
               custom_field_map={"axis 3 index type": "string", "axis 3 index values": "string"})
    for name in ("old", "new"):
        cine = read_cine(tmp_path / f"{name}.seq.nrrd")
        assert np.array_equal(cine.frames, frames), name
        assert cine.times == pytest.approx([0, 0.1, 0.25])
        assert cine.spacing == pytest.approx([0.5, 0.5, 1.0])
        assert cine.origin == pytest.approx([1, 2, 3])


def test_copy_of_bundled_dicom_without_extension_is_read(dicoms, tmp_path):
    shutil.copy(dicoms["rgb_color"], tmp_path / "IM0001")
    assert read_cine(tmp_path / "IM0001").frames.shape == (1, 240, 320, 3)


def test_lossy_grey_video_with_chroma_noise_reads_as_grey(tmp_path):
    from USGenLib.io import write_cine
    from USGenLib.types import Cine

    y, x = np.mgrid[0:64, 0:64]
    grey = np.stack([(x * 3 + y + 10 * t) % 256 for t in range(6)]).astype(np.uint8)
    write_cine(Cine(frames=grey, times=np.arange(6) / 25.0), tmp_path / "grey.mp4")  # yuv420p, lossy
    back = read_cine(tmp_path / "grey.mp4")
    assert back.frames.ndim == 3  # not RGB
    rgb = np.stack([grey, grey, grey], -1)
    rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 60, 0, 255)  # a truly coloured video stays RGB
    write_cine(Cine(frames=rgb, times=np.arange(6) / 25.0), tmp_path / "colour.avi")
    assert read_cine(tmp_path / "colour.avi").frames.ndim == 4
