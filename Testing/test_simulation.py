"""The simulation engine: physics a sonographer would check, geometry, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import SSIMMetric
from scipy import ndimage

from conftest import files_in
from USGenLib.io import read_cine, read_volume
from USGenLib.simulation import Simulator, make_phantom, make_probe
from USGenLib.simulation.tissues import BLOOD, BONE, LIVER, SOFT, TISSUES
from USGenLib.types import Volume

SIZE = (96, 96)


def label_volume(fill: int = LIVER, shape=(24, 64, 64), spacing=1.0) -> Volume:
    """(K, J, I) label block at 1 mm, identity direction: the default probe sits on j = 0."""
    return Volume(np.full(shape, fill, dtype=np.uint8), spacing=(spacing,) * 3, kind="labels")


def linear_probe(depth=50.0, lines=64):
    return make_probe("linear", depth_mm=depth, width_mm=40.0, n_scanlines=lines)


def pixel_columns_of(sim: Simulator, x_mm: float) -> int:
    """Image column nearest the probe's lateral position x (mm)."""
    conv = sim.renderer.converter
    return int(np.argmin(np.abs(conv.pixel_local[0, :, 0] - x_mm)))


def row_of(sim: Simulator, depth_mm: float) -> int:
    conv = sim.renderer.converter
    return int(np.argmin(np.abs(conv.pixel_local[:, 0, 1] - depth_mm)))


def test_attenuation_never_increases_down_a_beam():
    vol = label_volume()
    vol.array[:, 20:30, :] = 7   # kidney band: a step in attenuation
    vol.array[:, 30:34, 10:20] = 2  # fat patch
    sim = Simulator(vol, linear_probe(), "low", size=SIZE, seed=1)
    res = sim.simulate()
    att = res.attenuation.frames[0]
    fov = res.fov_mask.array[0].astype(bool)
    checked = 0
    for col in range(att.shape[1]):
        rows = np.nonzero(fov[:, col])[0]
        if rows.size < 10:
            continue
        column = att[rows, col]
        assert np.all(np.diff(column) <= 1e-6), f"attenuation rises down column {col}"
        checked += 1
    assert checked > 40
    assert att[fov].max() == pytest.approx(1.0) and att[fov].min() < 0.5


def _shadow_contrast(sim: Simulator, frames: np.ndarray, x_bone: float, x_free: float, depth: tuple[float, float]) -> float:
    r0, r1 = row_of(sim, depth[0]), row_of(sim, depth[1])
    cb, cf = pixel_columns_of(sim, x_bone), pixel_columns_of(sim, x_free)
    behind = frames[r0:r1, cb - 2:cb + 3].astype(float).mean()
    beside = frames[r0:r1, cf - 2:cf + 3].astype(float).mean()
    return behind, beside


def test_bone_casts_a_shadow_in_a_label_phantom():
    vol = label_volume(SOFT)
    vol.array[:, 10:14, 12:24] = BONE  # a rib 10-14 mm deep, x from -20 to -8 mm
    sim = Simulator(vol, linear_probe(), "low", size=SIZE, seed=2)
    bmode = sim.simulate().bmode.frames[0]
    behind, beside = _shadow_contrast(sim, bmode, x_bone=-14.0, x_free=12.0, depth=(22.0, 40.0))
    assert beside > 60 and behind < 0.2 * beside


def test_bone_block_in_a_ct_casts_a_shadow():
    hu = np.full((24, 64, 64), 40.0, dtype=np.float32)   # soft tissue
    hu[:, 10:14, 40:52] = 1200.0                        # cortical-bone block, x from +8 to +20 mm
    vol = Volume(hu, spacing=(1.0, 1.0, 1.0), kind="ct")
    sim = Simulator(vol, linear_probe(), "low", size=SIZE, seed=3)
    bmode = sim.simulate().bmode.frames[0]
    behind, beside = _shadow_contrast(sim, bmode, x_bone=14.0, x_free=-12.0, depth=(22.0, 40.0))
    assert beside > 60 and behind < 0.2 * beside


def test_anechoic_vessel_is_darker_than_tissue_around_it():
    vol = label_volume(LIVER)
    yy, xx = np.mgrid[0:64, 0:64]
    vol.array[:, (yy - 25) ** 2 + (xx - 32) ** 2 < 6 ** 2] = BLOOD  # vessel across k at 25 mm depth
    sim = Simulator(vol, linear_probe(), "low", size=SIZE, seed=4)
    bmode = sim.simulate().bmode.frames[0].astype(float)
    r, c = row_of(sim, 25.0), pixel_columns_of(sim, 0.0)
    inside = bmode[r - 3:r + 4, c - 3:c + 4].mean()
    around = np.concatenate([bmode[r - 3:r + 4, c - 25:c - 15].ravel(), bmode[r - 3:r + 4, c + 15:c + 25].ravel()]).mean()
    assert inside < 0.35 * around


def test_homogeneous_speckle_is_fully_developed():
    """Rayleigh envelope: mean / std = sqrt(pi / (4 - pi)) = 1.91."""
    vol = label_volume(LIVER, shape=(32, 96, 96), spacing=0.5)
    probe = make_probe("linear", depth_mm=45.0, width_mm=40.0, n_scanlines=128)
    sim = Simulator(vol, probe, "low", size=(192, 192), seed=5)
    env = sim.simulate(envelope=True).envelope[0]  # (S, L), after TGC, before log compression
    s = env.shape[0]
    band = env[s // 4: 3 * s // 4, 8:-8]
    band = band / band.mean(axis=1, keepdims=True)  # remove any residual depth trend
    snr = band.mean() / band.std()
    assert snr == pytest.approx(1.91, abs=0.15)


def test_low_and_high_quality_share_structure_but_not_speckle():
    vol = make_phantom("abdomen", seed=0, shape=(40, 64, 96))
    low = Simulator(vol, "convex", "low", size=(128, 128), seed=0)
    high = Simulator(vol, "convex", "high", size=(128, 128), seed=0)
    box = (slice(24, 72), slice(40, 88))  # inside the sector
    assert low.renderer.converter.fov[box].all()
    a = low.simulate().bmode.frames[0][box].astype(np.float32) / 255
    b = high.simulate().bmode.frames[0][box].astype(np.float32) / 255
    ssim = lambda x, y: SSIMMetric(spatial_dims=2, data_range=1.0)(  # noqa: E731
        torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]).item()
    smooth = lambda im: ndimage.gaussian_filter(im, 3.0)  # noqa: E731
    assert ssim(smooth(a), smooth(b)) > 0.9           # same anatomy
    assert ssim(a, b) < ssim(smooth(a), smooth(b)) - 0.1  # different speckle
    speckle_a, speckle_b = a - smooth(a), b - smooth(b)
    assert np.corrcoef(speckle_a.ravel(), speckle_b.ravel())[0, 1] < 0.95
    assert speckle_b.std() < speckle_a.std()


def test_elevational_compounding_lowers_speckle_variance():
    vol = label_volume(LIVER, shape=(32, 96, 96), spacing=0.5)
    probe = make_probe("linear", depth_mm=45.0, width_mm=40.0, n_scanlines=128)
    stats = {}
    for quality in ("low", "high"):
        env = Simulator(vol, probe, quality, size=(192, 192), seed=6).simulate(envelope=True).envelope[0]
        band = env[env.shape[0] // 4: 3 * env.shape[0] // 4, 8:-8]
        band = band / band.mean(axis=1, keepdims=True)
        stats[quality] = band.var()
    assert stats["high"] < 0.75 * stats["low"]


def test_fov_mask_matches_probe_geometry():
    vol = label_volume()
    lin = Simulator(vol, linear_probe(depth=50.0), "low", size=SIZE, seed=0).simulate()
    fov = lin.fov_mask.array[0].astype(bool)
    px = lin.bmode.spacing[0]
    cols = np.nonzero(fov.any(axis=0))[0]
    rows = np.nonzero(fov.any(axis=1))[0]
    assert (cols.size * px) == pytest.approx(40.0, abs=px)
    assert (rows.size * px) == pytest.approx(50.0, abs=px)
    assert fov[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # a full rectangle
    # Convex: pixels inside iff within the annulus sector of the probe.
    probe = make_probe("convex", depth_mm=60.0, radius_mm=40.0, opening_deg=60.0)
    sim = Simulator(label_volume(shape=(24, 110, 110)), probe, "low", size=SIZE, seed=0)
    mask = sim.simulate().fov_mask.array[0].astype(bool)
    pts = sim.renderer.converter.pixel_local
    r = np.hypot(pts[..., 0], pts[..., 1] + 40.0)
    angle = np.degrees(np.arctan2(pts[..., 0], pts[..., 1] + 40.0))
    expected = (r >= 40.0) & (r <= 100.0) & (np.abs(angle) <= 30.0)
    assert np.mean(mask == expected) > 0.995
    assert mask.sum() == pytest.approx(np.pi * (100 ** 2 - 40 ** 2) * 60 / 360 / sim.renderer.converter.pixel_mm ** 2, rel=0.03)


def test_label_map_matches_phantom_at_the_imaging_plane(tmp_path):
    vol = make_phantom("abdomen", seed=3, shape=(40, 64, 96))
    sim = Simulator(vol, "convex", "low", size=(128, 128), seed=0)
    res = sim.simulate()
    res.write(tmp_path)
    labels = read_cine(tmp_path / "labels.seq.nrrd")  # geometry as Slicer sees it
    fov = res.fov_mask.array[0].astype(bool)
    h, w = labels.height, labels.width
    jj, ii = np.mgrid[0:h, 0:w]
    pix = np.stack([ii.ravel(), jj.ravel(), np.zeros(h * w), np.ones(h * w)])
    lps = labels.index_to_physical() @ pix
    idx = np.rint((np.linalg.inv(vol.index_to_physical()) @ lps)[:3]).astype(int)  # (i, j, k)
    inside = np.all((idx >= 0) & (idx < np.array(vol.shape_ijk)[:, None]), axis=0).reshape(h, w) & fov
    truth = np.zeros((h, w), np.uint8)
    truth[inside] = vol.array[idx[2].reshape(h, w)[inside], idx[1].reshape(h, w)[inside], idx[0].reshape(h, w)[inside]]
    assert inside.sum() > 0.5 * fov.sum()
    agree = np.mean(labels.frames[0][inside] == truth[inside])
    assert agree > 0.97
    assert len(np.unique(truth[inside])) >= 4  # the plane crosses several tissues
    # The plane passes through the middle k slice, as the default pose promises.
    assert np.all(np.abs(idx[2].reshape(h, w)[inside] - (vol.shape_ijk[2] - 1) / 2) <= 0.5)


def test_same_seed_same_output_different_seed_different_speckle():
    vol = make_phantom("fetal", seed=1, shape=(32, 48, 72))
    a = Simulator(vol, "convex", "high", size=(64, 64), seed=7, rays=4).simulate().bmode.frames
    b = Simulator(vol, "convex", "high", size=(64, 64), seed=7, rays=4).simulate().bmode.frames
    c = Simulator(vol, "convex", "high", size=(64, 64), seed=8, rays=4).simulate().bmode.frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(make_phantom("abdomen", seed=4, shape=(16, 24, 32)).array,
                          make_phantom("abdomen", seed=4, shape=(16, 24, 32)).array)


def test_sweep_is_temporally_coherent_and_slicer_ready(tmp_path, usgen):
    res = usgen("simulate", "--phantom", "abdomen", "--quality", "low", "--sweep", "4", "--size", "64x64",
                "--sweep-mm", "2", "--out", tmp_path / "sim", "--quiet")
    assert res.code == 0, res.err
    out = tmp_path / "sim"
    assert files_in(out) == ["attenuation.seq.nrrd", "bmode.seq.nrrd", "fov_mask.nrrd", "labels.seq.nrrd", "meta.json"]
    bmode = read_cine(out / "bmode.seq.nrrd")
    att = read_cine(out / "attenuation.seq.nrrd")
    assert bmode.frames.shape == (4, 64, 64) and att.frames.dtype == np.float32
    assert np.allclose(bmode.spacing, att.spacing) and np.allclose(bmode.origin, att.origin)
    fov = read_volume(out / "fov_mask.nrrd", kind="labels")
    assert fov.array.shape == (1, 64, 64) and np.allclose(fov.spacing[:2], bmode.spacing[:2])
    # Scatterers are fixed in the volume: frames 0.67 mm apart share most of their speckle.
    f = bmode.frames.astype(float)
    mask = fov.array[0].astype(bool)
    near = np.corrcoef(f[1][mask], f[2][mask])[0, 1]
    assert near > 0.5
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 4 and len(meta["poses"]) == 4 and meta["pose_space"] == "LPS"
    assert meta["probe"]["kind"] == "convex" and len(meta["tissue_table"]) == len(TISSUES)
    assert meta["timing"]["frames_per_s"] > 0


def test_pose_file_drives_the_probe(tmp_path, usgen):
    vol = label_volume(LIVER)
    sitk.WriteImage(sitk.GetImageFromArray(vol.array), str(tmp_path / "liver.nrrd"))
    sim = Simulator(read_volume(tmp_path / "liver.nrrd"), "linear", "low", size=SIZE)
    pose = sim.default_pose()
    pose[:3, 3] += [5.0, 0.0, 3.0]
    (tmp_path / "pose.json").write_text(json.dumps({"space": "LPS", "matrix": pose.tolist()}))
    res = usgen("simulate", "--ct", tmp_path / "liver.nrrd", "--probe", "linear", "--pose", tmp_path / "pose.json",
                "--size", "64x64", "--out", tmp_path / "out", "--quiet")
    assert res.code == 0, res.err
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert np.allclose(meta["poses"][0], pose, atol=1e-6)
    assert meta["volume"]["kind"] == "labels"


@pytest.mark.parametrize("case", ["missing_ct", "pose_outside", "zero_size", "nan_hu", "unknown_phantom"])
def test_bad_input_exits_2_without_output(tmp_path, usgen, case):
    out = tmp_path / "out"
    args = ["simulate", "--out", out, "--size", "64x64"]
    if case == "missing_ct":
        args += ["--ct", tmp_path / "nothere.nrrd"]
        expect = "nothere.nrrd: file does not exist"
    elif case == "pose_outside":
        (tmp_path / "pose.json").write_text(json.dumps(np.eye(4).tolist()[:3] + [[0, 0, 0, 1]]))
        pose = np.eye(4)
        pose[:3, 3] = [5000.0, 0.0, 0.0]
        (tmp_path / "pose.json").write_text(json.dumps({"matrix": pose.tolist()}))
        args += ["--phantom", "abdomen", "--pose", tmp_path / "pose.json"]
        expect = "pose.json: pose 0 puts the transducer outside the volume"
    elif case == "zero_size":
        args = ["simulate", "--out", out, "--phantom", "abdomen", "--size", "0x256"]
        expect = "--size 0x256"
    elif case == "nan_hu":
        hu = np.full((8, 16, 16), 40.0, np.float32)
        hu[2, 3, 4] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / "ct.mha"))
        args += ["--ct", tmp_path / "ct.mha"]
        expect = "ct.mha: volume contains 1 NaN"
    else:
        args += ["--phantom", "kidney"]
        expect = "unknown phantom 'kidney'"
    res = usgen(*args)
    assert res.code == 2
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], res.err
    assert not out.exists()


def test_hu_plus_1000_data_is_recognised():
    from USGenLib.simulation.ct_properties import detect_hu_offset

    body = np.full((8, 16, 16), 40.0, np.float32)
    body[:, :4] = -1000.0                       # air above the skin
    assert detect_hu_offset(body) == 0.0
    assert detect_hu_offset(body + 1000.0) == 1000.0
    no_air = np.full((8, 16, 16), 40.0, np.float32)
    no_air[:, 5:7, 5:9] = 1200.0                # soft tissue and bone, no air: true HU
    assert detect_hu_offset(no_air) == 0.0
