"""Paired data sets: CFD overlays, the beating-heart echo phantom, enhancement pairs, layouts."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import files_in
from USGenLib.datasets.color_flow import ColorFlowSettings, FlowField, render_color_flow
from USGenLib.datasets.echonet import read_echonet_filelist, read_volume_tracings
from USGenLib.datasets.layouts import read_manifest
from USGenLib.datasets.lv_measure import ejection_fraction_from_masks
from USGenLib.io import read_cine, read_volume
from USGenLib.types import Cine


@pytest.fixture(scope="session")
def cfd_set(tmp_path_factory):
    from USGenLib.cli import main

    out = tmp_path_factory.mktemp("cfd") / "set"
    assert main(["dataset", "cfd", "--n", "12", "--size", "96x96", "--frames", "4", "--seed", "3",
                 "--workers", "2", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def echo_set(tmp_path_factory):
    from USGenLib.cli import main

    out = tmp_path_factory.mktemp("echo") / "set"
    assert main(["dataset", "echo", "--n", "3", "--size", "96x96", "--frames", "20", "--seed", "1",
                 "--out", str(out), "--quiet"]) == 0
    return out


def is_colour(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.int16)
    return (f.max(-1) - f.min(-1)) > 0


def test_cfd_mask_is_exactly_where_colour_was_written(cfd_set):
    rows = read_manifest(cfd_set)
    assert len(rows) == 12
    for row in rows:
        item = cfd_set / row["id"]
        assert sorted(p for p in files_in(item) if p.endswith(".nrrd")) == ["bmode.seq.nrrd", "cfd.seq.nrrd", "mask.seq.nrrd"]
        cfd, gt, mask = (read_cine(item / n) for n in ("cfd.seq.nrrd", "bmode.seq.nrrd", "mask.seq.nrrd"))
        assert cfd.frames.shape == (4, 96, 96, 3) and gt.frames.shape == (4, 96, 96)
        m = mask.frames.astype(bool)
        outside = ~m
        # Outside the mask the CFD screen is the ground truth, pixel for pixel, in all channels.
        assert np.array_equal(cfd.frames[outside], np.repeat(gt.frames[outside][:, None], 3, axis=1))
        # Every coloured pixel lies inside the mask.
        assert not np.any(is_colour(cfd.frames) & outside)
        assert row["coverage"] == pytest.approx(m.mean(), abs=1e-5)
        assert np.allclose(cfd.spacing, gt.spacing) and np.allclose(cfd.times, mask.times)


def test_cfd_coverage_is_sensible_and_quartiles_balanced(cfd_set):
    rows = read_manifest(cfd_set)
    cov = np.array([r["coverage"] for r in rows])
    assert cov.min() > 0.01 and cov.max() < 0.6
    quartiles = np.array([r["coverage_quartile"] for r in rows])
    assert sorted(np.bincount(quartiles, minlength=5)[1:].tolist()) == [3, 3, 3, 3]
    # Quartile follows coverage order.
    order = np.argsort(cov)
    assert np.all(np.diff(quartiles[order]) >= 0)
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def _flow_scene(velocity_mm_s: float, t: int = 3, size: int = 64, mode: str = "velocity", nyquist: float = 300.0):
    grey = np.full((t, size, size), 60, np.uint8)
    grey[:, :, 40:] = 220  # bright tissue on the right: above the write-priority level
    bmode = Cine(grey, spacing=(0.2, 0.2, 1.0))
    vel = np.full((t, size, size), velocity_mm_s, np.float32)
    power = np.zeros((t, size, size), np.float32)
    power[:, 16:48, 8:56] = 1.0
    box = np.zeros((size, size), bool)
    box[8:56, 4:60] = True
    settings = ColorFlowSettings(mode=mode, nyquist=nyquist, noise=0.0, velocity_noise=0.0, outline_level=0,
                                 persistence=0.0, smoothing=0.0)
    clip = render_color_flow(bmode, FlowField(vel, power), box, settings, np.random.default_rng(0))
    return clip.cfd.frames[:, 20:44, 12:36].reshape(-1, 3).astype(int), clip


def test_velocity_mode_colours_direction_speed_and_aliasing():
    toward, _ = _flow_scene(+150.0)
    away, _ = _flow_scene(-150.0)
    assert np.all(toward[:, 0] > toward[:, 2] + 60)   # red toward the probe
    assert np.all(away[:, 2] > away[:, 0] + 60)       # blue away
    fast, _ = _flow_scene(+280.0)
    assert fast.sum(1).mean() > toward.sum(1).mean()  # brighter with speed
    aliased, _ = _flow_scene(+400.0, nyquist=300.0)   # beyond Nyquist: wraps to the other side
    assert np.all(aliased[:, 2] > aliased[:, 0])


def test_power_mode_is_orange_and_direction_free():
    a, _ = _flow_scene(+150.0, mode="power")
    b, _ = _flow_scene(-150.0, mode="power")
    assert np.array_equal(a, b)
    assert np.all(a[:, 0] >= a[:, 1]) and np.all(a[:, 1] >= a[:, 2]) and a[:, 0].mean() > 150


def test_write_priority_keeps_bright_tissue_grey():
    _, clip = _flow_scene(+150.0)
    bright = clip.cfd.frames[:, 20:44, 44:56]          # flow under bright (220) tissue
    assert not is_colour(bright).any()
    assert is_colour(clip.cfd.frames[:, 20:44, 12:36]).all()


def test_echo_ef_from_masks_matches_label_and_ed_es_frames(echo_set):
    rows = read_manifest(echo_set)
    assert {r["view"] for r in rows} == {"A4C", "PSAX", "PLAX"}
    for row in rows:
        item = echo_set / row["id"]
        cine, mask = read_cine(item / "cine.seq.nrrd"), read_cine(item / "lv_mask.seq.nrrd")
        assert cine.frames.shape == mask.frames.shape == (20, 96, 96)
        # EF is exact from the analytic volumes.
        assert row["ef"] == pytest.approx(100 * (row["edv"] - row["esv"]) / row["edv"], abs=1e-3)
        areas = mask.frames.reshape(20, -1).sum(1)
        ed, es = row["ed_frame"], row["es_frame"]
        assert areas[ed] == pytest.approx(areas.max(), rel=0.02)
        assert areas[es] == pytest.approx(areas.min(), rel=0.02)
        # Long-axis views by Simpson's discs, the short-axis view by its area (sphere).
        method = "sphere" if row["view"] == "PSAX" else "simpson"
        ef = ejection_fraction_from_masks(mask.frames.astype(bool), float(mask.spacing[0]), method)[0]
        assert ef == pytest.approx(row["ef"], abs=5.0), row["view"]


def test_echonet_layout_reads_back(echo_set):
    rows = {r["id"]: r for r in read_manifest(echo_set)}
    root = echo_set / "echonet"
    listing = read_echonet_filelist(root)
    tracings = read_volume_tracings(root)
    assert len(listing) == len(rows)
    for entry in listing:
        row = rows[entry["FileName"]]
        assert entry["EF"] == pytest.approx(row["ef"], abs=1e-3)
        assert entry["Split"] == row["split"].upper()
        video = read_cine(root / "Videos" / f"{entry['FileName']}.avi")
        assert video.frames.shape == (entry["NumberOfFrames"], entry["FrameHeight"], entry["FrameWidth"])
        assert video.fps == pytest.approx(entry["FPS"], rel=1e-3)
        # The AVI is lossless: the same pixels as the item's cine.
        assert np.array_equal(video.frames, read_cine(echo_set / row["id"] / "cine.seq.nrrd").frames)
        assert set(tracings[entry["FileName"]]) == {row["ed_frame"], row["es_frame"]}


def test_enhance_pairs_share_poses_and_differ_in_quality(tmp_path, usgen):
    res = usgen("dataset", "enhance", "--n", "1", "--size", "64x64", "--frames", "2", "--out", tmp_path / "e", "--quiet")
    assert res.code == 0, res.err
    item = tmp_path / "e" / read_manifest(tmp_path / "e")[0]["id"]
    lq, hq = read_cine(item / "lq.seq.nrrd"), read_cine(item / "hq.seq.nrrd")
    labels, att = read_cine(item / "labels.seq.nrrd"), read_cine(item / "attenuation.seq.nrrd")
    fov = read_volume(item / "fov_mask.nrrd", kind="labels").array[0].astype(bool)
    assert lq.frames.shape == hq.frames.shape == labels.frames.shape == att.frames.shape == (2, 64, 64)
    assert np.allclose(lq.origin, hq.origin) and np.allclose(lq.direction, hq.direction)
    assert not np.array_equal(lq.frames, hq.frames)
    assert np.corrcoef(lq.frames[0][fov].astype(float), hq.frames[0][fov].astype(float))[0, 1] > 0.5
    assert np.all(labels.frames[:, ~fov] == 0) and att.frames.max() <= 1.0


def test_same_seed_same_data_whatever_the_workers(tmp_path, usgen):
    for name, workers, seed in (("a", "1", "5"), ("b", "2", "5"), ("c", "1", "6")):
        assert usgen("dataset", "cfd", "--n", "3", "--size", "64x64", "--frames", "2", "--seed", seed,
                     "--workers", workers, "--out", tmp_path / name, "--quiet").code == 0
    for item in ("cfd_000000", "cfd_000001", "cfd_000002"):
        a = read_cine(tmp_path / "a" / item / "cfd.seq.nrrd").frames
        assert np.array_equal(a, read_cine(tmp_path / "b" / item / "cfd.seq.nrrd").frames)
    assert (tmp_path / "a" / "manifest.csv").read_text() == (tmp_path / "b" / "manifest.csv").read_text()
    assert (tmp_path / "a" / "manifest.csv").read_text() != (tmp_path / "c" / "manifest.csv").read_text()


@pytest.mark.parametrize("args,expect", [
    (["cfd", "--n", "0"], "--n must be a positive number"),
    (["cfd", "--n", "2", "--size", "10x10"], "--size 10x10: height and width must be between 32 and 1024"),
    (["cfd", "--n", "2", "--size", "big"], "--size must look like HxW, e.g. 256x256, got 'big'"),
    (["echo", "--n", "2", "--frames", "3"], "--frames must lie in 8..2000 for echo"),
    (["cfd", "--n", "2", "--workers", "0"], "--workers must be at least 1"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, usgen, args, expect):
    res = usgen("dataset", *args, "--out", tmp_path / "out")
    assert res.code == 2
    assert expect in res.err and len(res.err.strip().splitlines()) == 1
    assert files_in(tmp_path) == []


def test_existing_non_empty_output_is_refused(tmp_path, usgen):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    res = usgen("dataset", "cfd", "--n", "1", "--out", tmp_path / "out")
    assert res.code == 2 and "already exists" in res.err
    assert files_in(tmp_path / "out") == ["keep.txt"]
