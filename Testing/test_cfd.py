"""CFD removal in native geometry: exact composite, geometry and frame times, windows, dual displays,
grey input, the real power-Doppler files, label-map output."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from USGenLib.cfd.detect import removal_mask
from USGenLib.cfd.network_grid import (blend_weights, crops_for, display_regions, from_network, temporal_windows,
                                 to_network)
from USGenLib.cfd.remove import load_remover, remove_color_flow
from USGenLib.datasets.cfd_scene import make_cfd_clip
from USGenLib.io import read_cine, write_seq_nrrd
from USGenLib.io.luma import luma
from USGenLib.types import Cine
from conftest import make_cine


@pytest.fixture(scope="module")
def remover(cfd_tiny_weights):
    """The tiny networks with the colour rule alone (no learned mask), so masks are known exactly."""
    return replace(load_remover(cfd_tiny_weights, "cpu"), mask_model=None, mask_weights=None)


def _geometry_cine(frames: np.ndarray) -> Cine:
    geo = make_cine(frames=frames.shape[0])
    return Cine(frames=frames, spacing=geo.spacing, origin=geo.origin, direction=geo.direction, times=geo.times,
                meta={"modality": "US"})


def test_outside_mask_is_the_input_bit_for_bit(remover):
    clip = make_cfd_clip(np.random.default_rng(3), size=(96, 128), frames=12, target_coverage=0.2)
    cine = _geometry_cine(clip.cfd.frames)
    bmode, mask, report = remove_color_flow(cine, remover)
    m = mask.frames.astype(bool)
    assert bmode.frames.shape == cine.frames.shape[:3] and bmode.frames.dtype == np.uint8
    assert m.mean() > 0.05 and report["mean_coverage"] == pytest.approx(m.mean(), abs=1e-4)
    assert np.array_equal(bmode.frames[~m], luma(cine.frames)[~m])
    assert np.array_equal(m, removal_mask(cine.frames))
    # geometry and frame times travel unchanged
    for out in (bmode, mask):
        assert np.array_equal(out.spacing, cine.spacing) and np.array_equal(out.origin, cine.origin)
        assert np.array_equal(out.direction, cine.direction) and np.array_equal(out.times, cine.times)

    kept, _, _ = remove_color_flow(cine, remover, keep_color_text=True)
    assert kept.frames.shape == cine.frames.shape
    assert np.array_equal(kept.frames[~m], cine.frames[~m])
    assert np.all(kept.frames[m][:, 0] == kept.frames[m][:, 2])  # grey where the colour was


@pytest.mark.parametrize("name", ["rgb_color", "jpeg2k"])
def test_real_power_doppler_files_lose_all_colour(name, dicoms, remover):
    cine = read_cine(dicoms[name])
    bmode, mask, _ = remove_color_flow(cine, remover)
    m = mask.frames.astype(bool)
    assert bmode.frames.ndim == 3  # grey output: no coloured pixel can be left
    assert 0.04 < m.mean() < 0.1
    assert np.array_equal(bmode.frames[~m], luma(np.asarray(cine.frames))[~m])
    f = np.asarray(cine.frames).astype(int)
    grey_in = (f.max(-1) - f.min(-1)) == 0
    assert np.array_equal(bmode.frames[grey_in & ~m], f[..., 0][grey_in & ~m])  # grey pixels untouched


def test_grey_cine_comes_back_unchanged_with_empty_mask(remover):
    cine = make_cine(frames=4)
    bmode, mask, report = remove_color_flow(cine, remover)
    assert np.array_equal(bmode.frames, cine.frames) and not mask.frames.any()
    assert "grey input" in report["note"] and report["mean_coverage"] == 0.0


def test_colour_text_without_flow_is_not_inpainted(remover):
    frames = np.repeat(make_cine(frames=3, h=64, w=64).frames[..., None], 3, axis=-1)
    frames[:, 5:7, 5:30] = (40, 220, 60)  # a green marker line: colour, but no flow
    bmode, mask, report = remove_color_flow(_geometry_cine(frames), remover)
    assert not mask.frames.any() and "no colour flow found" in report["note"]
    assert np.array_equal(bmode.frames, luma(frames))
    kept, _, _ = remove_color_flow(_geometry_cine(frames), remover, keep_color_text=True)
    assert np.array_equal(kept.frames, frames)


def test_long_clip_streams_in_windows_and_overlaps_blend(remover):
    clip = make_cfd_clip(np.random.default_rng(5), size=(64, 64), frames=30, target_coverage=0.15)
    cine = _geometry_cine(clip.cfd.frames)
    bmode, mask, report = remove_color_flow(cine, remover)
    assert report["windows"] == len(temporal_windows(30, remover.config.window, remover.config.overlap)) > 3
    m = mask.frames.astype(bool)
    assert np.array_equal(bmode.frames[~m], luma(cine.frames)[~m])
    assert len(report["mask_coverage"]) == 30 and min(report["mask_coverage"]) > 0


def test_windows_cover_every_frame_once_with_the_overlap():
    for n, w, o in [(1, 16, 4), (16, 16, 4), (17, 16, 4), (100, 16, 4), (30, 8, 2)]:
        wins = temporal_windows(n, w, o)
        assert wins[0][0] == 0 and wins[-1][1] == n
        for (a0, a1), (b0, b1) in zip(wins, wins[1:]):
            assert a1 - b0 == o and a1 - a0 <= w
        total = np.zeros(n)
        for a, b in wins:
            total[a:b] += blend_weights(a, b, n, o)
        assert np.allclose(total, 1.0)


def test_dual_display_is_split_at_the_gutter():
    frame = np.full((1, 50, 200), 60, np.uint8)
    frame[:, :, 95:103] = 0
    (a0, cut), (cut2, b1) = display_regions(frame)
    assert (a0, b1) == (0, 200) and cut == cut2 and 95 <= cut < 103
    assert display_regions(np.full((1, 50, 200), 60, np.uint8)) == [(0, 200)]


def test_network_crop_round_trips_the_input_grid():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (3, 90, 120), dtype=np.uint8)
    mask = np.zeros(grey.shape, bool)
    mask[:, 30:50, 40:70] = True
    mask[1, 80:84, 110:114] = True  # a separate colour patch (e.g. the colour bar): its own box
    crop, patch = crops_for(mask, (0, 120), scale=256 / 120, margin=16)
    assert (crop.y0, crop.y1, crop.x0, crop.x1) == (30 - 8, 50 + 8, 40 - 8, 70 + 8)
    assert (patch.y0, patch.y1, patch.x0, patch.x1) == (72, 90, 102, 120)
    x = to_network(grey, mask, crop)
    assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
    assert x[0, 1].sum() > 0 and float(x[0, 0][x[0, 1] > 0].abs().max()) == 0.0  # hidden pixels zeroed
    back = from_network(x[:, :1], crop)
    assert back.shape == (3, crop.y1 - crop.y0, crop.x1 - crop.x0)


def test_cli_remove_writes_label_sequence_and_report(cfd_tiny_weights, tmp_path, usgen):
    clip = make_cfd_clip(np.random.default_rng(9), size=(64, 96), frames=6, target_coverage=0.1)
    src = write_seq_nrrd(_geometry_cine(clip.cfd.frames), tmp_path / "in.seq.nrrd")
    res = usgen("cfd", "remove", src, tmp_path / "out", "--weights", cfd_tiny_weights, "--progress-json")
    assert res.code == 0, res.err
    assert res.json_lines()[-1]["stage"] == "done"
    header = (tmp_path / "out" / "cfd_mask.seq.nrrd").read_bytes()[:2000].decode("latin-1")
    assert "DataNodeClassName:=vtkMRMLLabelMapVolumeNode" in header
    cine_in, out = read_cine(src), read_cine(tmp_path / "out" / "bmode.seq.nrrd")
    assert np.allclose(out.times, cine_in.times) and np.allclose(out.spacing, cine_in.spacing)
    assert np.allclose(out.origin, cine_in.origin) and np.allclose(out.direction, cine_in.direction)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["frames"] == 6 and report["input"] == "in.seq.nrrd" and report["device"] == "cpu"
    assert str(tmp_path) not in json.dumps(report)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bmode.seq.nrrd", "cfd_mask.seq.nrrd",
                                                                    "report.json"]


def test_eval_reports_ablation_quartiles_and_real_files(cfd_tiny_data, cfd_tiny_weights, tmp_path, usgen):
    card = tmp_path / "w.safetensors"
    for ext in (".safetensors", ".json", ".md"):
        card.with_suffix(ext).write_bytes(cfd_tiny_weights.with_suffix(ext).read_bytes())
    res = usgen("cfd", "eval", "--data", cfd_tiny_data, "--weights", card, "--split", "train", "--max-items", "2",
                "--out", tmp_path / "eval.json", "--update-card", "--quiet")
    assert res.code == 0, res.err
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["clips"] == 2 and set(result["table"]) == {"input", "coarse", "bridge", "full", "full_detected_mask"}
    for figs in result["table"].values():
        assert 0 < figs["all"]["ssim"]["mean"] <= 1 and figs["all"]["psnr"]["mean"] > 5
    for real in result["real_files"]:
        assert real["coloured_pixels_left"] == 0 and real["changed_outside_mask"] == 0
    assert "Ablation on the train split" in card.with_suffix(".md").read_text()
    assert "full_detected_mask" in res.out and "examples_rgb_color.dcm" in res.out


def test_bench_prints_fps_256_json(cfd_tiny_weights, usgen):
    res = usgen("bench", "cfd", "--frames", "4", "--weights", cfd_tiny_weights, "--json", "--quiet")
    assert res.code == 0, res.err
    result = json.loads(res.out.strip().splitlines()[0])
    assert result["fps_256"] > 0 and result["frames"] == 4 and result["peak_rss_mb"] > 50
    assert 0 < result["mask_coverage"] < 0.5


def test_a_still_frame_is_filled_like_the_same_frame_in_a_clip(remover):
    clip = make_cfd_clip(np.random.default_rng(11), size=(64, 64), frames=1, target_coverage=0.2)
    still = _geometry_cine(clip.cfd.frames)
    frozen = _geometry_cine(np.repeat(clip.cfd.frames, remover.config.clip_frames, axis=0))
    a, _, _ = remove_color_flow(still, remover)
    b, _, _ = remove_color_flow(frozen, remover)
    assert np.array_equal(a.frames[0], b.frames[0])


@pytest.fixture(scope="module")
def tiny_mask_weights(cfd_tiny_data, tmp_path_factory):
    from USGenLib.cli import main

    run = tmp_path_factory.mktemp("mask_run") / "run"
    assert main(["cfd", "train", "--network", "mask", "--data", str(cfd_tiny_data), "--config", "tiny",
                 "--out", str(run), "--steps", "6", "--workers", "0", "--quiet"]) == 0
    return run / "model.safetensors"


def test_learned_mask_adds_only_near_the_colour(cfd_tiny_weights, tiny_mask_weights):
    from USGenLib.cfd.remove import LEARNED_MARGIN, detect_mask

    remover = load_remover(cfd_tiny_weights, "cpu", mask_weights=tiny_mask_weights)
    assert remover.mask_model is not None and "learned" in remover.describe()["mask"]
    clip = make_cfd_clip(np.random.default_rng(4), size=(96, 96), frames=4, target_coverage=0.15)
    rgb = clip.cfd.frames.copy()
    rgb[:, 90:93, 2:20] = 200  # grey text far from the colour
    rule = removal_mask(rgb)
    mask = detect_mask(rgb, remover)
    assert np.all(mask[rule])  # the rule's pixels always stay
    near = np.zeros(rule.shape[1:], bool)  # the boxes around each colour area, grown by the margin
    for crop in crops_for(rule, (0, 96), 1.0, LEARNED_MARGIN):
        near[crop.y0:crop.y1, crop.x0:crop.x1] = True
    assert near.mean() < 1 and not mask[:, ~near].any()  # nothing added away from the colour


def test_mask_weights_of_another_network_are_refused(cfd_tiny_weights, usgen, cfd_clip_file, tmp_path):
    res = usgen("cfd", "remove", cfd_clip_file, tmp_path / "o", "--weights", cfd_tiny_weights,
                "--mask-weights", cfd_tiny_weights)
    assert res.code == 2 and "not 'cfd_mask' weights" in res.err and len(res.err.strip().splitlines()) == 1
