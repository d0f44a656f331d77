"""Synthetic echocardiograms: each network trains, generated clips load with their geometry, frame
times and labels, the privacy filter catches training copies, seeds and guidance act, bad input
is one line."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from USGenLib.datasets.echonet import read_echonet_filelist
from USGenLib.echo.autoencoder import encode_frames
from USGenLib.echo.calibration import conditioning_ef, fit_calibration
from USGenLib.echo.config import CONFIGS, STAGES
from USGenLib.echo.data import ef_balanced_weights, load_cycles
from USGenLib.echo.generate import generate_clip
from USGenLib.echo.labels import EFRegressor, largest_blob, mask_ef
from USGenLib.echo.models import load_models
from USGenLib.echo.reid import privacy_threshold
from USGenLib.echo.train import JOBS
from USGenLib.io import read_cine
from USGenLib.train.distributed import Rank
from conftest import files_in, torchrun_usgen


@pytest.fixture(scope="module")
def models(echo_tiny_weights):
    return load_models(echo_tiny_weights, "cpu")


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_learns_its_batch(stage, echo_tiny_data, echo_tiny_weights):
    """A few optimiser steps on one batch lower that batch's loss (gradients reach every loss term)."""
    kwargs = {"cache_dir": echo_tiny_weights} if stage in ("lifm", "reid", "lvfm") else {}
    job = JOBS[stage](str(echo_tiny_data), CONFIGS["tiny"], 0, torch.device("cpu"), Rank(),
                      echo_tiny_weights, **kwargs)
    batch = job.make_batch(0, 0)
    key = {"avae": "l1", "seg": "dice_ce", "ef": "mse", "lifm": "flow_mse", "reid": "contrastive",
           "lvfm": "flow_mse"}[stage]
    losses = [job.train_step(batch, step=0)[key] for _ in range(12)]
    assert losses[-1] < 0.9 * losses[0], losses


def test_train_all_writes_weights_cards_and_logs(echo_tiny_data, echo_tiny_weights):
    for stage in STAGES:
        card = json.loads((echo_tiny_weights / f"{stage}.json").read_text())
        assert card["network"] == f"echo_{stage}" and card["steps"] == CONFIGS["tiny"].steps_of(stage)
        assert card["data"].startswith(f"{echo_tiny_data} (12 training clips")
        assert (echo_tiny_weights / f"{stage}.md").read_text().startswith("# Model card")
        log = [json.loads(ln) for ln in (echo_tiny_weights / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "validation" in r] == [4, 6]      # --validate-every 4, and the last step
    reid = json.loads((echo_tiny_weights / "reid.json").read_text())
    assert 0 <= reid["figures"]["val_reid_accuracy"] <= 1


def test_train_all_under_torchrun_keeps_one_process_group(echo_tiny_data, tmp_path):
    """Two gloo processes train the whole chain; each stage starts from the weights the last one wrote
    (a process group per stage hung at the second stage)."""
    res = torchrun_usgen("echo", "train", "all", "--data", echo_tiny_data, "--config", "tiny",
                         "--out", tmp_path / "ddp", "--device", "cpu", "--quiet")
    assert res.returncode == 0, res.stderr[-8000:]
    for stage in STAGES:
        card = json.loads((tmp_path / "ddp" / f"{stage}.json").read_text())
        assert card["processes"] == 2 and card["steps"] == CONFIGS["tiny"].steps_of(stage), stage
    lvfm = json.loads((tmp_path / "ddp" / "lvfm.json").read_text())
    assert lvfm["avae"] == str(tmp_path / "ddp" / "avae.safetensors")  # the chain's own A-VAE, not the bundled one
    assert load_models(tmp_path / "ddp").config == CONFIGS["tiny"]  # all six load together


def test_generate_writes_clips_slicer_loads(usgen, echo_tiny_weights, tmp_path):
    out = tmp_path / "gen"
    r = usgen("echo", "generate", "--view", "PSAX", "--ef", "40", "--n", "2", "--frames", "12", "--seed", "3",
              "--candidates", "3", "--weights-dir", echo_tiny_weights, "--out", out, "--quiet")
    assert r.code == 0, r.err
    rows = (out / "manifest.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("id,view,requested_ef")
    for line in rows[1:]:
        clip_id = line.split(",")[0]
        report = json.loads((out / clip_id / "report.json").read_text())
        cine = read_cine(out / clip_id / "cine.seq.nrrd")
        lv = read_cine(out / clip_id / "lv.seq.nrrd")
        assert cine.frames.shape == (12, 32, 32) and cine.frames.dtype == np.uint8
        assert np.allclose(np.diff(cine.times), 1 / report["fps"]) and cine.times[0] == 0
        assert np.allclose(cine.spacing[:2], report["pixel_mm"])
        assert np.array_equal(lv.times, cine.times) and np.array_equal(lv.spacing, cine.spacing)
        assert set(np.unique(lv.frames)) <= {0, 1}
        assert all(ndimage.label(f)[1] <= 1 for f in lv.frames)          # one LV per frame, no stray specks
        header = (out / clip_id / "lv.seq.nrrd").read_bytes().split(b"\n\n")[0]   # Slicer: a label-map sequence
        assert b"DataNodeClassName:=vtkMRMLLabelMapVolumeNode" in header
        # the labels are the report's: EF, ED and ES measured again from the label file
        again = mask_ef(lv.frames, "PSAX", report["pixel_mm"])
        assert again["ef"] == pytest.approx(report["mask_ef"]) and again["ed_frame"] == report["ed_frame"]
        assert again["es_frame"] == report["es_frame"]
        assert report["requested_ef"] == 40 and report["view"] == "PSAX" and report["reid"]["rejections"] >= 0
        assert 1 <= len(report["candidate_mask_efs"]) <= 3 and report["mask_ef"] in report["candidate_mask_efs"]
        assert int(line.split(",")[9]) == len(report["candidate_mask_efs"])      # the manifest's candidates column
    files = read_echonet_filelist(out / "echonet")
    by_masks = [json.loads((out / f["FileName"] / "report.json").read_text())["mask_ef"] for f in files]
    assert [f["EF"] for f in files] == pytest.approx(by_masks, abs=0.01)        # relabelled by what the video shows
    assert [f["EF"] for f in files] == pytest.approx([100 * (1 - f["ESV"] / f["EDV"]) for f in files], abs=0.05)
    assert all(f["NumberOfFrames"] == 12 for f in files)
    assert len(list((out / "echonet" / "Videos").glob("*.avi"))) == 2
    assert [p for p in files_in(tmp_path) if p.startswith(".")] == []


def test_generate_a_data_set_of_every_view_and_an_ef_range(usgen, echo_tiny_weights, tmp_path):
    out = tmp_path / "set"
    r = usgen("echo", "generate", "--view", "all", "--ef-range", "20", "80", "--n", "4", "--frames", "8",
              "--weights-dir", echo_tiny_weights, "--out", out, "--quiet")
    assert r.code == 0, r.err
    lines = (out / "manifest.csv").read_text().splitlines()[1:]
    asked = [(ln.split(",")[1], float(ln.split(",")[2])) for ln in lines]
    assert asked == [("A4C", 20.0), ("PSAX", 40.0), ("PLAX", 60.0), ("A4C", 80.0)]
    assert [ln.split(",")[0] for ln in lines][:2] == ["a4c_ef20_seed0_000", "psax_ef40_seed0_001"]
    assert len(read_echonet_filelist(out / "echonet")) == 4


def test_ef_regressor_is_the_volume_ratio_of_its_frames():
    """EF = 100 (1 - V_min / V_max) of the per-frame volume scores: where the clip starts does not matter."""
    torch.manual_seed(0)
    net = EFRegressor(CONFIGS["tiny"]).eval()
    video = torch.rand(2, 1, 8, 32, 32)
    with torch.no_grad():
        ef, logits = net(video), net(video, per_frame=True)
        h = net.log_volumes(logits)
        rolled = net(torch.roll(video, 3, dims=2))
    assert logits.shape == (2, 8, 16, 16) and h.shape == (2, 8)
    assert torch.allclose(ef, 100 * (1 - h.exp().min(1).values / h.exp().max(1).values), atol=1e-4)
    assert torch.allclose(ef, rolled, atol=1e-3) and ((ef >= 0) & (ef < 100)).all()


def test_ef_training_moves_frames_and_masks_together(echo_tiny_data):
    """The augmentation gives a clip's frames and its LV masks one pose: a video that is its own mask
    still lines up with the masks afterwards, and poses do change between draws."""
    train = load_cycles(str(echo_tiny_data), "train", 32)
    masks = train.masks[0].float()
    t = len(masks)
    moved = 0
    for seed in range(6):
        out = JOBS["ef"].augment(torch.cat([masks, masks]), seed, t)
        video, warped = out[:t] > 0.5, out[t:].bool()
        assert set(np.unique(out[t:].numpy())) <= {0.0, 1.0}
        overlap = 2 * (video & warped).sum() / (video.sum() + warped.sum())
        assert overlap > 0.9, (seed, float(overlap))
        moved += not torch.equal(warped, masks.bool())
    assert moved >= 3


def test_ef_bands_are_drawn_equally_and_stray_blobs_dropped():
    ef = torch.tensor([15.0, 55, 56, 57, 58, 62, 33])
    w = ef_balanced_weights(ef)
    bands = np.floor(ef.numpy() / 10)
    assert np.isclose(w.sum(), 1) and len({round(float(w[bands == b].sum()), 9) for b in np.unique(bands)}) == 1
    mask = np.zeros((12, 12), bool)
    mask[1:6, 1:6] = True
    mask[9:11, 9:11] = True
    assert largest_blob(mask).sum() == 25 and not largest_blob(mask)[9:, 9:].any()


def test_same_seed_same_clip_other_seed_other_clip(models):
    a, la, ra = generate_clip(models, "A4C", 55.0, 8, 7, 0, 3, 2.0)
    b, lb, rb = generate_clip(models, "A4C", 55.0, 8, 7, 0, 3, 2.0)
    c, _, _ = generate_clip(models, "A4C", 55.0, 8, 8, 0, 3, 2.0)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(la.frames, lb.frames)
    assert ra["regressed_ef"] == rb["regressed_ef"]
    assert np.abs(a.frames.astype(int) - c.frames.astype(int)).mean() > 1


def test_guidance_changes_the_clip(models):
    """Same seed, guidance 0 (unconditional) vs 4: the clip differs (the tiny networks have learnt little
    about their conditions, so the difference is small but must be there)."""
    plain, _, _ = generate_clip(models, "PLAX", 30.0, 8, 5, 0, 3, 0.0)
    again, _, _ = generate_clip(models, "PLAX", 30.0, 8, 5, 0, 3, 0.0)
    guided, _, _ = generate_clip(models, "PLAX", 30.0, 8, 5, 0, 3, 4.0)
    assert np.array_equal(plain.frames, again.frames)
    assert (plain.frames != guided.frames).mean() > 0.01


def test_ef_calibration_inverts_each_views_line_within_the_training_efs():
    cond = np.array([20.0, 40, 60, 80] * 3)
    views = np.repeat([0, 1, 2], 4)
    measured = np.where(views == 0, 0.7 * cond + 13, np.where(views == 1, cond - 8, 0.05 * cond + 40))
    cal = fit_calibration(cond, measured, views, 3)
    assert torch.allclose(cal[0], torch.tensor([0.7, 13.0]), atol=1e-4)
    assert torch.allclose(cal[2], torch.tensor([1.0, 0.0]))            # flat: the EF barely acts, no map
    ef_range = torch.tensor([15.0, 76.0])
    assert conditioning_ef(cal, ef_range, 0, 48.0) == pytest.approx(50.0, abs=1e-3)
    assert conditioning_ef(cal, ef_range, 1, 42.0) == pytest.approx(50.0, abs=1e-3)
    assert conditioning_ef(cal, ef_range, 0, 90.0) == pytest.approx(76.0)   # clipped to what training held
    assert conditioning_ef(None, None, 0, 33.0) == 33.0
    one_ef = fit_calibration(np.full(4, 50.0), np.arange(4.0), np.zeros(4, int), 1)
    assert torch.equal(one_ef, torch.tensor([[1.0, 0.0]]))


def test_lvfm_weights_carry_their_ef_calibration(models):
    assert models.ef_calibration.shape == (3, 2) and models.ef_range.shape == (2,)
    assert 5 <= float(models.ef_range[0]) <= float(models.ef_range[1]) <= 95


def test_candidates_are_drawn_until_the_masks_show_the_ef(models):
    """The kept video is the candidate whose LV-mask EF is closest to the request; drawing stops at the
    first within the tolerance, and one candidate keeps the first."""
    _, lv, many = generate_clip(models, "A4C", 55.0, 8, 4, 0, 3, 2.0, candidates=6)
    efs = many["candidate_mask_efs"]
    assert 1 <= len(efs) <= 6 and many["mask_ef"] == min(efs, key=lambda e: abs(e - 55.0))
    assert all(abs(e - 55.0) > models.config.ef_tolerance for e in efs[:-1])
    assert len(efs) == 6 or abs(efs[-1] - 55.0) <= models.config.ef_tolerance
    assert mask_ef(lv.frames, "A4C", many["pixel_mm"])["ef"] == pytest.approx(many["mask_ef"])
    # the video model is asked for the calibrated EF, not the request itself
    steep = replace(models, ef_calibration=torch.tensor([[0.5, 10.0]] * 3), ef_range=torch.tensor([5.0, 95.0]))
    assert generate_clip(steep, "A4C", 55.0, 8, 4, 0, 3, 2.0, candidates=1)[2]["conditioning_ef"] == pytest.approx(90.0)
    _, _, one = generate_clip(models, "A4C", 55.0, 8, 4, 0, 3, 2.0, candidates=1)
    assert one["candidate_mask_efs"] == efs[:1]


def test_reid_rejects_training_copies_and_threshold_is_the_95th_percentile(models, echo_tiny_data):
    train = load_cycles(str(echo_tiny_data), "train", models.config.size)
    z = encode_frames(models.vae, torch.stack([c[0] for c in train.cycles]))
    assert models.reid.rejects(z).all()                    # every training heart, copied exactly
    assert models.reid.threshold < 0.9999
    gen = torch.Generator().manual_seed(0)
    train_emb, val_emb = torch.randn(40, 8, generator=gen), torch.randn(10, 8, generator=gen)
    maxima = [max(float(np.corrcoef(t, v)[0, 1]) for t in train_emb.numpy()) for v in val_emb.numpy()]
    assert privacy_threshold(train_emb, val_emb, 95.0) == pytest.approx(np.percentile(maxima, 95), abs=1e-5)


def test_eval_and_bench_report_their_figures(usgen, echo_tiny_data, echo_tiny_weights, tmp_path):
    out = tmp_path / "eval.json"
    r = usgen("echo", "eval", "--data", echo_tiny_data, "--weights-dir", echo_tiny_weights, "--n", "3",
              "--downstream-steps", "2", "--out", out, "--device", "cpu", "--quiet")
    assert r.code == 0, r.err
    result = json.loads(out.read_text())
    assert result["reid_planted_exact_caught"] == 1.0
    assert 0 <= result["reid_fresh_rejection_rate"] < 1 and 0 <= result["mask_dice"] <= 1
    assert -1 <= result["avae_ssim"] <= 1 and result["avae_psnr"] > 0 and result["frechet_video"] >= 0
    for name in ("synthetic", "synthetic_regressed", "synthetic_requested", "real"):
        assert result[f"downstream_{name}_mae"] > 0 and result[f"downstream_{name}_rmse"] >= result[f"downstream_{name}_mae"]
    assert "Downstream EF R^2, trained on synthetic only" in r.out
    assert 1 <= result["candidates_drawn_mean"] <= CONFIGS["tiny"].ef_candidates
    assert set(result["ef_calibration"]) == {"A4C", "PSAX", "PLAX"} and "LVFM EF calibration" in r.out
    b = usgen("bench", "echo", "--weights-dir", echo_tiny_weights, "--clips", "1", "--json", "--quiet")
    assert b.code == 0, b.err
    bench = json.loads(b.out)
    assert bench["seconds_per_clip"] > 0 and bench["steps"] == CONFIGS["tiny"].sample_steps and bench["frames"] == 32


@pytest.mark.parametrize("args, says", [
    (["--view", "A2C", "--ef", "50"], "invalid choice"),
    (["--view", "A4C", "--ef", "3"], "outside 5..95"),
    (["--view", "A4C", "--ef", "96"], "outside 5..95"),
    (["--view", "A4C", "--ef", "nan"], "outside 5..95"),
    (["--view", "A4C", "--ef", "50", "--frames", "0"], "outside 8..128"),
    (["--view", "A4C", "--ef-range", "20", "99"], "outside 5..95"),
    (["--view", "A4C"], "one of the arguments --ef --ef-range is required"),
    (["--view", "all", "--ef", "50", "--ef-range", "20", "80"], "not allowed with"),
])
def test_bad_requests_are_one_line(usgen, echo_tiny_weights, tmp_path, args, says):
    out = tmp_path / "gen"
    r = usgen("echo", "generate", *args, "--weights-dir", echo_tiny_weights, "--out", out, "--quiet")
    assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith("usgen: error:") and says in r.err
    assert not out.exists()


def test_missing_and_mismatched_weights_are_one_line(usgen, echo_tiny_weights, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = usgen("echo", "generate", "--view", "A4C", "--ef", "50", "--weights-dir", empty, "--out", tmp_path / "a", "--quiet")
    assert r.code == 2 and r.err.count("\n") == 1 and "avae.safetensors" in r.err and "no avae weights" in r.err
    swapped = tmp_path / "swapped"
    shutil.copytree(echo_tiny_weights, swapped, ignore=shutil.ignore_patterns("avae", "seg", "ef", "lifm", "reid", "lvfm"))
    shutil.copy(swapped / "ef.safetensors", swapped / "lvfm.safetensors")
    r = usgen("echo", "generate", "--view", "A4C", "--ef", "50", "--weights-dir", swapped, "--out", tmp_path / "b", "--quiet")
    assert r.code == 2 and r.err.count("\n") == 1 and "'echo_ef'" in r.err and "'echo_lvfm'" in r.err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bundled_weights_generate_offline(usgen, tmp_path):
    """`usgen echo generate` with no weights named uses Resources/weights/echo (each file under 20 MB,
    with its model card): a 32-frame 112x112 clip whose labels the report describes."""
    from USGenLib.echo.models import default_weights_dir

    for stage in STAGES:
        path = default_weights_dir() / f"{stage}.safetensors"
        assert path.stat().st_size < 20 << 20 and path.with_suffix(".md").is_file()
        assert json.loads(path.with_suffix(".json").read_text())["config"]["name"] == "default"
    out = tmp_path / "a4c"
    r = usgen("echo", "generate", "--view", "A4C", "--ef", "35", "--n", "1", "--out", out, "--device", "cpu", "--quiet")
    assert r.code == 0, r.err
    (folder,) = [p for p in out.iterdir() if p.is_dir() and p.name != "echonet"]
    report = json.loads((folder / "report.json").read_text())
    cine, lv = read_cine(folder / "cine.seq.nrrd"), read_cine(folder / "lv.seq.nrrd")
    assert cine.frames.shape == lv.frames.shape == (32, 112, 112)
    assert report["steps"] == 8 and report["requested_ef"] == 35 and 5 < report["regressed_ef"] < 95
    assert report["device"] == "cpu"
    assert lv.frames.reshape(32, -1).any(1).all()                  # an LV found on every frame
    assert report["mask_ef"] == pytest.approx(mask_ef(lv.frames, "A4C", report["pixel_mm"])["ef"])
