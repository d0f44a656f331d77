"""Sim-to-real enhancement: networks, training, `usgen enhance` geometry, metrics, unpaired mode,
evaluation and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from USGenLib.enhance.networks import CONFIGS, VARIANTS, UNetGenerator, discriminator, generator, input_channels
from USGenLib.enhance.unpaired import RealFrames, domain_accuracy
from USGenLib.io import read_cine, read_volume, write_seq_nrrd
from USGenLib.metrics import frechet_distance, patch_kl
from USGenLib.types import Cine
from conftest import files_in, tiny_dataset


@pytest.fixture(scope="module")
def enhance_data(tmp_path_factory) -> Path:
    """An 8-sweep `usgen dataset enhance` folder at 64x64, 2 frames."""
    return tiny_dataset(tmp_path_factory, "enhance", 8, "64x64", 2)


@pytest.fixture(scope="module")
def runs(enhance_data, tmp_path_factory) -> dict[str, Path]:
    """Tiny weights: the anatomy network and one generator per variant."""
    from USGenLib.cli import main

    root = tmp_path_factory.mktemp("enh_runs")
    out = {}
    for name, extra in [("anatomy", ["--network", "anatomy", "--steps", "40"])] + \
                       [(v, ["--variant", v, "--steps", "80"]) for v in VARIANTS]:
        assert main(["enhance", "train", "--data", str(enhance_data), "--config", "tiny", "--out", str(root / name),
                     "--quiet", *extra]) == 0
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def simulation(tmp_path_factory) -> Path:
    """A 3-frame low-quality `usgen simulate` folder at 96x80 (not a multiple of the generator's stride)."""
    from USGenLib.cli import main

    out = tmp_path_factory.mktemp("enh_sim") / "sim"
    assert main(["simulate", "--phantom", "abdomen", "--sweep", "3", "--size", "96x80", "--out", str(out),
                 "--quiet"]) == 0
    return out


def test_default_generator_is_the_papers_8_level_unet_and_fits_the_size_limit():
    cfg = CONFIGS["default"]
    g = generator(cfg).eval()
    strided = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 8 and all(m.kernel_size == (4, 4) for m in strided)
    with torch.no_grad():
        y = g(torch.zeros(1, input_channels("MSA"), 256, 256))
    assert y.shape == (1, 1, 256, 256) and float(y.abs().max()) <= 1.0
    assert sum(p.numel() for p in g.parameters()) * 4 < 20e6
    assert [input_channels(v) for v in VARIANTS] == [2, 12, 13]


def test_discriminator_sees_70x70_patches():
    d = discriminator(CONFIGS["default"], 1).eval()
    for parent in list(d.modules()):  # instance norm spreads gradients frame-wide: measure the convolutions
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.InstanceNorm2d):
                setattr(parent, name, torch.nn.Identity())
    x = torch.zeros(1, 1, 128, 128, requires_grad=True)
    out = d(x)[-1]
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert int(rows[-1] - rows[0] + 1) == 70 and int(cols[-1] - cols[0] + 1) == 70


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_and_its_loss_falls(runs, variant):
    log = [json.loads(line) for line in (runs[variant] / "log.jsonl").read_text().splitlines()]
    l1 = [r["l1"] for r in log if "l1" in r]
    assert len(l1) == 8 and np.mean(l1[-2:]) < 0.8 * np.mean(l1[:2])
    card = json.loads((runs[variant] / "model.json").read_text())
    assert card["config"]["variant"] == variant and "val_psnr" in card["figures"]


def test_enhance_keeps_geometry_frame_times_and_black_outside_fov(runs, simulation, tmp_path, usgen):
    out = tmp_path / "out"
    r = usgen("enhance", simulation, out, "--weights", runs["MSA"] / "model.safetensors", "--device", "cpu", "--quiet")
    assert r.code == 0, r.err
    assert files_in(out) == ["enhanced.seq.nrrd", "report.json"]
    src, enh = read_cine(simulation / "bmode.seq.nrrd"), read_cine(out / "enhanced.seq.nrrd")
    assert enh.frames.shape == src.frames.shape == (3, 96, 80) and enh.frames.dtype == np.uint8
    np.testing.assert_allclose(enh.spacing, src.spacing)
    np.testing.assert_allclose(enh.origin, src.origin)
    np.testing.assert_allclose(enh.direction, src.direction)
    np.testing.assert_allclose(enh.times, src.times)
    fov = read_volume(simulation / "fov_mask.nrrd", kind="labels").array.reshape(96, 80) > 0
    assert 0.2 < fov.mean() < 1 and enh.frames[:, ~fov].max() == 0 and enh.frames[:, fov].std() > 1
    report = json.loads((out / "report.json").read_text())
    assert report["variant"] == "MSA" and report["frames"] == 3 and report["device"] == "cpu"


def test_simulate_with_enhance_writes_what_enhance_writes(runs, simulation, tmp_path, usgen):
    sim = tmp_path / "sim"
    r = usgen("simulate", "--phantom", "abdomen", "--sweep", "3", "--size", "96x80", "--enhance",
              "--enhance-weights", runs["MS"] / "model.safetensors", "--out", sim, "--quiet")
    assert r.code == 0, r.err
    assert "enhanced.seq.nrrd" in files_in(sim)
    assert usgen("enhance", sim, tmp_path / "again", "--weights", runs["MS"] / "model.safetensors", "--quiet").code == 0
    np.testing.assert_array_equal(read_cine(sim / "enhanced.seq.nrrd").frames,
                                  read_cine(tmp_path / "again" / "enhanced.seq.nrrd").frames)
    assert json.loads((sim / "meta.json").read_text())["enhance"]["variant"] == "MS"
    r = usgen("simulate", "--phantom", "abdomen", "--quality", "high", "--enhance", "--out", tmp_path / "x")
    assert r.code == 2 and "--enhance" in r.err and not (tmp_path / "x").exists()


def test_patch_kl_and_frechet_are_zero_for_identical_inputs_and_grow_with_noise():
    rng = np.random.default_rng(0)
    image = (rng.gamma(2.0, 40.0, (2, 128, 128))).clip(0, 255).astype(np.uint8)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (5, 20, 60)]
    kls = [patch_kl(image, n) for n in noisy]
    assert patch_kl(image, image) == 0.0 and 0 < kls[0] < kls[1] < kls[2]
    feats = rng.normal(size=(200, 16))
    fds = [frechet_distance(feats, feats + rng.normal(0, s, feats.shape)) for s in (0.1, 0.5, 1.5)]
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-8) and 0 < fds[0] < fds[1] < fds[2]


def test_real_frames_are_cropped_to_the_image_and_cines_hold_frames_out(dicoms, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(dicoms["ybr_color"], folder / "echo.dcm")
    real = RealFrames(folder, short_side=64)
    assert len(real.train) + len(real.held_out) == 30 and len(real.held_out) == 7
    assert min(real.train[0].shape) == 64
    crops = real.crops(np.random.default_rng(0), 4, 48)
    assert crops.shape == (4, 1, 48, 48) and 0 <= float(crops.min()) and float(crops.max()) <= 1


def test_domain_classifier_is_at_chance_for_one_domain_and_separates_two():
    rng = np.random.default_rng(0)
    speckle = [rng.gamma(1.0, 60.0, (96, 96)).clip(0, 255).astype(np.uint8) for _ in range(12)]
    smooth = [np.full((96, 96), 120, np.uint8) + rng.integers(0, 10, (96, 96)).astype(np.uint8) for _ in range(12)]
    same = domain_accuracy(speckle[:6], speckle[6:9], speckle[9:], speckle[:3], steps=40)
    apart = domain_accuracy(speckle[:8], smooth[:8], speckle[8:], smooth[8:], steps=40)
    assert abs(same - 0.5) < 0.15 and apart > 0.95


def test_unpaired_mode_trains_toward_a_folder_of_real_scans(enhance_data, runs, dicoms, tmp_path, usgen):
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(dicoms["ybr_color"], real / "echo.dcm")
    out = tmp_path / "unpaired"
    r = usgen("enhance", "train", "--data", enhance_data, "--config", "tiny", "--unpaired-real", real,
              "--anatomy-weights", runs["anatomy"] / "model.safetensors", "--steps", "6", "--out", out, "--quiet")
    assert r.code == 0, r.err
    card = json.loads((out / "model.json").read_text())
    assert card["config"]["mode"] == "unpaired" and "echo.dcm" in card["data"]
    for key in ("domain_acc_simulation", "domain_acc_translated", "val_dice_translated"):
        assert 0.0 <= card["figures"][key] <= 1.0
    r = usgen("enhance", "train", "--data", enhance_data, "--config", "tiny", "--unpaired-real", tmp_path / "none",
              "--out", tmp_path / "u2")
    assert r.code == 2 and "none" in r.err and not (tmp_path / "u2").exists()


def test_eval_reports_every_row_with_spread_and_wilcoxon(enhance_data, runs, tmp_path, usgen):
    out = tmp_path / "eval.json"
    r = usgen("enhance", "eval", "--data", enhance_data, "--weights", *[runs[v] / "model.safetensors" for v in VARIANTS],
              "--anatomy-weights", runs["anatomy"] / "model.safetensors", "--no-ct", "--out", out, "--quiet")
    assert r.code == 0, r.err
    result = json.loads(out.read_text())
    assert list(result["table"]) == ["low quality", "M", "MS", "MSA"]
    for row in result["table"].values():
        assert row["psnr"]["p5"] <= row["psnr"]["mean"] <= row["psnr"]["p95"] and row["ssim"]["n"] == result["frames"]
        assert row["frechet"]["value"] >= 0
    assert set(result["wilcoxon"]) >= {"M vs MS", "MS vs MSA", "low quality vs MSA"}
    assert all(0 <= p <= 1 for pair in result["wilcoxon"].values() for p in pair.values())


def test_bad_inputs_are_one_line_and_exit_2(runs, simulation, tmp_path, usgen):
    weights = runs["MSA"] / "model.safetensors"
    no_maps = tmp_path / "no_maps"
    no_maps.mkdir()
    shutil.copy(simulation / "bmode.seq.nrrd", no_maps)
    shutil.copy(simulation / "fov_mask.nrrd", no_maps)
    r = usgen("enhance", no_maps, tmp_path / "o1", "--weights", weights)
    assert r.code == 2 and "labels" in r.err and len(r.err.strip().splitlines()) == 1

    mismatched = tmp_path / "mismatched"
    shutil.copytree(simulation, mismatched)
    labels = read_cine(simulation / "labels.seq.nrrd")
    write_seq_nrrd(Cine(frames=labels.frames[:, :48], spacing=labels.spacing, origin=labels.origin,
                        direction=labels.direction, times=labels.times), mismatched / "labels.seq.nrrd")
    r = usgen("enhance", mismatched, tmp_path / "o2", "--weights", weights)
    assert r.code == 2 and "labels.seq.nrrd" in r.err and "96x80" in r.err

    r = usgen("enhance", simulation, tmp_path / "o3", "--weights", runs["M"] / "model.safetensors", "--variant", "MSA")
    assert r.code == 2 and "variant M" in r.err
    r = usgen("enhance", simulation, tmp_path / "o4", "--weights", runs["anatomy"] / "model.safetensors")
    assert r.code == 2 and "enhance_anatomy" in r.err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_resuming_a_run_as_another_variant_is_refused(enhance_data, runs, usgen):
    r = usgen("enhance", "train", "--data", enhance_data, "--config", "tiny", "--variant", "M", "--resume",
              "--out", runs["MSA"])
    assert r.code == 2 and "variant MSA" in r.err and "variant M " in r.err


def test_generator_pads_any_frame_size_to_its_stride():
    g = UNetGenerator(2, ngf=2, levels=3, dropout=0.0).eval()
    from USGenLib.enhance.inputs import pad_to_multiple

    x, (h, w) = pad_to_multiple(torch.zeros(1, 2, 13, 21), g.multiple)
    assert x.shape[-2:] == (16, 24) and (h, w) == (13, 21) and g(x).shape == (1, 1, 16, 24)
