"""The model foundation (USGenLib/train) through the CFD job: loss falls, resume is exact, two gloo
processes train, weights and devices are checked with one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from USGenLib.cfd.networks import CONFIGS, CFDRemover
from USGenLib.cfd.train import CFDTrainJob
from USGenLib.errors import UsgenInputError
from USGenLib.train.distributed import Rank
from USGenLib.train.loop import LoopSettings, run_loop
from USGenLib.train.weights import load_state_into, load_weights, save_weights
from conftest import torchrun_usgen


def _job(data: Path, seed: int = 0) -> CFDTrainJob:
    return CFDTrainJob(str(data), CONFIGS["tiny"], seed, torch.device("cpu"), Rank())


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_config_loss_falls(cfd_tiny_data, tmp_path):
    job = _job(cfd_tiny_data)
    run_loop(job, tmp_path / "run", LoopSettings(steps=24, log_every=1, validate_every=100, checkpoint_every=100),
             Rank(), torch.device("cpu"), {})
    coarse = [r["coarse_l1"] for r in _log(tmp_path / "run") if "coarse_l1" in r]
    assert len(coarse) == CONFIGS["tiny"].coarse_steps
    refine = [r["refine_l1"] for r in _log(tmp_path / "run") if "refine_l1" in r]
    first, last = sum(refine[:5]) / 5, sum(refine[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_resume_after_interruption_matches_uninterrupted_run(cfd_tiny_data, tmp_path):
    settings = LoopSettings(steps=8, log_every=1, validate_every=4, checkpoint_every=3)
    whole = _job(cfd_tiny_data)
    run_loop(whole, tmp_path / "whole", settings, Rank(), torch.device("cpu"), {})

    broken = _job(cfd_tiny_data)
    real_step = broken.train_step

    def dies_at_step_7(batch, step):
        if step == 7:
            raise KeyboardInterrupt
        return real_step(batch, step)

    broken.train_step = dies_at_step_7
    with pytest.raises(KeyboardInterrupt):
        run_loop(broken, tmp_path / "part", settings, Rank(), torch.device("cpu"), {})
    assert json.loads((tmp_path / "part" / "log.jsonl").read_text().splitlines()[-1])["step"] == 7

    with pytest.raises(UsgenInputError, match="--resume"):  # never silently overwrite a run
        run_loop(_job(cfd_tiny_data), tmp_path / "part", settings, Rank(), torch.device("cpu"), {})
    resumed = _job(cfd_tiny_data)
    summary = run_loop(resumed, tmp_path / "part", settings, Rank(), torch.device("cpu"), {}, resume=True)
    assert summary["resumed_from"] == 6  # the last checkpoint before the failure
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert _log(tmp_path / "whole") == _drop_times(_log(tmp_path / "part"), _log(tmp_path / "whole"))


def _drop_times(part: list[dict], whole: list[dict]) -> list[dict]:
    """Wall times differ between runs; everything else must be equal."""
    times = {r["step"]: r["time_s"] for r in whole if "time_s" in r}
    return [{**r, "time_s": times[r["step"]]} if "time_s" in r else r for r in part]


def test_two_gloo_processes_train(cfd_tiny_data, tmp_path):
    res = torchrun_usgen("cfd", "train", "--data", cfd_tiny_data, "--config", "tiny", "--out", tmp_path / "ddp",
                         "--steps", "6", "--device", "cpu", "--workers", "0", "--quiet")
    assert res.returncode == 0, res.stderr[-8000:]  # long enough to keep a worker's own last words
    card = json.loads((tmp_path / "ddp" / "model.json").read_text())
    assert card["processes"] == 2 and card["steps"] == 6
    assert [r["step"] for r in _log(tmp_path / "ddp") if "time_s" in r] == [6]


def test_weights_roundtrip_and_refusals(tmp_path):
    model = CFDRemover(CONFIGS["tiny"])
    path = save_weights(tmp_path / "w.safetensors", "cfd", model.state_dict(), CONFIGS["tiny"].to_dict(),
                        {"command": "usgen cfd train ...", "steps": 1, "figures": {"ssim": 0.5}})
    state, config = load_weights(path, "cfd")
    load_state_into(CFDRemover(CONFIGS["tiny"]), state, path)
    assert config["coarse_channels"] == CONFIGS["tiny"].coarse_channels
    assert "usgen cfd train" in path.with_suffix(".md").read_text()

    with pytest.raises(UsgenInputError, match="not 'enhance' weights"):
        load_weights(path, "enhance")
    with pytest.raises(UsgenInputError, match="do not fit the network"):
        load_state_into(CFDRemover(CONFIGS["default"]), state, path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(UsgenInputError, match="not a safetensors weights file"):
        load_weights(junk, "cfd")
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(bare))
    with pytest.raises(UsgenInputError, match="no USGen network name"):
        load_weights(bare, "cfd")


@pytest.mark.parametrize("kind", ["junk", "other_network", "wrong_shapes"])
def test_cli_refuses_bad_weights_with_one_line(kind, cfd_clip_file, tmp_path, usgen):
    w = tmp_path / "w.safetensors"
    if kind == "junk":
        w.write_bytes(b"\x00" * 100)
    elif kind == "other_network":
        save_weights(w, "echo", CFDRemover(CONFIGS["tiny"]).state_dict(), CONFIGS["tiny"].to_dict(), {})
    else:
        config = {**CONFIGS["tiny"].to_dict(), "coarse_channels": 6}
        save_weights(w, "cfd", CFDRemover(CONFIGS["tiny"]).state_dict(), config, {})
    res = usgen("cfd", "remove", cfd_clip_file, tmp_path / "out", "--weights", w)
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and str(w) in res.err
    assert not (tmp_path / "out").exists()


def test_device_cuda_without_gpu_is_one_line(cfd_clip_file, cfd_tiny_weights, tmp_path, usgen):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = usgen("cfd", "remove", cfd_clip_file, tmp_path / "out", "--weights", cfd_tiny_weights, "--device", "cuda")
    assert res.code == 2 and "no CUDA GPU" in res.err and len(res.err.strip().splitlines()) == 1


def test_train_cli_refuses_existing_run_and_non_dataset(cfd_tiny_data, cfd_tiny_weights, tmp_path, usgen):
    res = usgen("cfd", "train", "--data", tmp_path, "--config", "tiny", "--out", tmp_path / "r")
    assert res.code == 2 and "manifest.csv" in res.err
    run = cfd_tiny_weights.parent
    res = usgen("cfd", "train", "--data", cfd_tiny_data, "--config", "tiny", "--out", run, "--steps", "2")
    assert res.code == 2 and "--resume" in res.err


def test_free_form_holes_over_tissue():
    import numpy as np

    from USGenLib.cfd.train import tissue_item

    bmode = torch.rand(1, 8, 64, 64)
    item = tissue_item({"cfd": torch.zeros(3, 8, 64, 64), "bmode": bmode, "mask": torch.zeros(1, 8, 64, 64)},
                       np.random.default_rng(1))
    mask = item["mask"]
    assert mask.shape == (1, 8, 64, 64) and 0.01 < float(mask.mean()) < 0.5
    assert torch.equal(item["cfd"][0], bmode[0]) and torch.equal(item["cfd"][2], bmode[0])  # a grey screen
    assert float((mask[0, 0] != mask[0, -1]).float().mean()) > 0  # the holes move over time
