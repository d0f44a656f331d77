"""torch Datasets over data sets the `usgen dataset` command writes, EchoNet-Dynamic and paired DICOMs."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd
from torch.utils.data import DataLoader

from USGenLib.cli import main
from USGenLib.datasets.layouts.manifest import read_manifest
from USGenLib.datasets.torch_datasets import (CFDDataset, EchoDataset, EchoNetDynamicDataset, EnhanceDataset,
                                              PairedDicomDataset)
from USGenLib.errors import UsgenInputError
from USGenLib.io import read_cine, write_cine

SIZE = 64


def _generate(tmp_path_factory, kind: str, *args) -> Path:
    out = tmp_path_factory.mktemp(kind) / "data"
    code = main(["dataset", kind, "--size", f"{SIZE}x{SIZE}", "--out", str(out), "--quiet", *map(str, args)])
    assert code == 0, f"usgen dataset {kind} failed with exit code {code}"
    return out


@pytest.fixture(scope="session")
def cfd_root(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory, "cfd", "--n", 8, "--frames", 4)


@pytest.fixture(scope="session")
def echo_root(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory, "echo", "--n", 3, "--frames", 16)


@pytest.fixture(scope="session")
def enhance_root(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory, "enhance", "--n", 2, "--frames", 2)


@pytest.fixture(scope="session")
def dicom_pairs(tmp_path_factory, cfd_root) -> Path:
    """The first three CFD items as a user's folder: <id>_cfd.dcm (RGB) + <id>_bmode.dcm (grey)."""
    folder = tmp_path_factory.mktemp("dicom_pairs")
    for row in read_manifest(cfd_root)[:3]:
        item = cfd_root / row["path"]
        write_cine(read_cine(item / "cfd.seq.nrrd"), folder / f"{row['id']}_cfd.dcm")
        write_cine(read_cine(item / "bmode.seq.nrrd"), folder / f"{row['id']}_bmode.dcm")
    return folder


def _manifest_by_id(root: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_manifest(root)}


# ---------------------------------------------------------------------------------------------- CFD


def test_cfd_items_shapes_ranges_and_mask_is_where_colour_replaced_grey(cfd_root):
    ds = CFDDataset(cfd_root, split=None)
    manifest = _manifest_by_id(cfd_root)
    assert len(ds) == 8 and sorted(ds.ids) == sorted(manifest)
    for item in ds:
        cfd, bmode, mask = item["cfd"], item["bmode"], item["mask"]
        assert cfd.shape == (3, 4, SIZE, SIZE) and bmode.shape == (1, 4, SIZE, SIZE) and mask.shape == (1, 4, SIZE, SIZE)
        assert cfd.dtype == bmode.dtype == mask.dtype == torch.float32
        assert 0.0 <= float(cfd.min()) and float(cfd.max()) <= 1.0 and float(cfd.max()) > 0.5
        assert 0.0 <= float(bmode.min()) and float(bmode.max()) <= 1.0 and float(bmode.max()) > 0.2
        assert set(torch.unique(mask).tolist()) == {0.0, 1.0}
        differs = (cfd != bmode).any(dim=0, keepdim=True).float()   # colour where the RGB is not the grey
        assert torch.equal(mask, differs)
        row = manifest[item["id"]]
        assert item["coverage"] == pytest.approx(float(mask.mean()), abs=1e-5)
        assert item["coverage"] == pytest.approx(row["coverage"]) and item["coverage_quartile"] == row["coverage_quartile"]
    # quartiles rank coverage: every quartile-4 item covers more than every quartile-1 item
    cov = {q: [r["coverage"] for r in manifest.values() if r["coverage_quartile"] == q] for q in (1, 4)}
    assert min(cov[4]) > max(cov[1])


def test_cfd_split_and_frames(cfd_root):
    manifest = read_manifest(cfd_root)
    train = CFDDataset(cfd_root)  # split="train" by default
    assert train.ids == [r["id"] for r in manifest if r["split"] == "train"] and 0 < len(train) < 8
    full = CFDDataset(cfd_root, split=None)[0]
    short = CFDDataset(cfd_root, split=None, frames=2)[0]
    for key in ("cfd", "bmode", "mask"):
        assert short[key].shape[1] == 2 and torch.equal(short[key], full[key][:, :2])
    with pytest.raises(UsgenInputError, match="fewer than the 9"):
        CFDDataset(cfd_root, split=None, frames=9)[0]


def test_cfd_weighted_sampler_draws_high_coverage_more(cfd_root):
    ds = CFDDataset(cfd_root, split=None)
    quartiles = torch.tensor([ds[i]["coverage_quartile"] for i in range(len(ds))])
    assert torch.equal(ds.sampling_weights(), quartiles.double())
    assert sorted(quartiles.tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]  # 8 items, two per quartile
    sampler = ds.weighted_sampler(num_samples=2000, generator=torch.Generator().manual_seed(0))
    draws = torch.tensor(list(sampler))
    assert len(draws) == 2000
    per_quartile = {q: int(torch.isin(draws, torch.nonzero(quartiles == q).flatten()).sum()) for q in (1, 2, 3, 4)}
    assert per_quartile[1] < per_quartile[2] < per_quartile[3] < per_quartile[4]
    assert 3.3 < per_quartile[4] / per_quartile[1] < 4.8           # expected 4: 800 vs 200 draws
    assert per_quartile[1] == pytest.approx(200, abs=50)
    assert len(list(ds.weighted_sampler())) == len(ds)


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_roots_raise_usgen_input_error(tmp_path, cfd_root, echo_root):
    with pytest.raises(UsgenInputError, match="manifest.csv") as err:
        CFDDataset(tmp_path)
    assert err.value.path.endswith("manifest.csv")
    with pytest.raises(UsgenInputError, match="unknown split 'training'"):
        CFDDataset(cfd_root, split="training")
    with pytest.raises(UsgenInputError, match="cfd data set, not echo"):
        EchoDataset(cfd_root)
    with pytest.raises(UsgenInputError, match="unknown EchoNet split"):
        EchoNetDynamicDataset(echo_root / "echonet", split="holdout")
    with pytest.raises(UsgenInputError, match="Videos"):
        EchoNetDynamicDataset(tmp_path)
    # a listed file that is gone is named
    broken = tmp_path / "broken"
    shutil.copytree(cfd_root, broken)
    victim = broken / read_manifest(broken)[0]["path"] / "mask.seq.nrrd"
    victim.unlink()
    with pytest.raises(UsgenInputError) as err:
        CFDDataset(broken, split=None)
    assert err.value.path == str(victim)


# ---------------------------------------------------------------------------------------------- echo


def test_echo_items_values(echo_root):
    ds = EchoDataset(echo_root)
    manifest = _manifest_by_id(echo_root)
    assert len(ds) == 3
    for item in ds:
        cine, mask = item["cine"], item["lv_mask"]
        assert cine.shape == mask.shape == (1, 16, SIZE, SIZE) and cine.dtype == torch.float32
        assert 0.0 <= float(cine.min()) and float(cine.max()) <= 1.0 and float(cine.std()) > 0.02
        assert set(torch.unique(mask).tolist()) == {0.0, 1.0}
        row = manifest[item["id"]]
        assert item["ef"] == row["ef"] and item["view"] == row["view"] and item["clip_start"] == 0
        assert item["ef"] == pytest.approx(100 * (item["edv"] - item["esv"]) / item["edv"], abs=0.01)
        area = mask[0].sum(dim=(1, 2))
        assert area[item["ed_frame"]] > area[item["es_frame"]]   # the LV is larger at end-diastole


def test_echo_clips_window_offset_seed_and_padding(echo_root):
    full = EchoDataset(echo_root)
    fixed = EchoDataset(echo_root, clip_frames=5, clip_offset=3)[1]
    assert fixed["clip_start"] == 3 and torch.equal(fixed["cine"], full[1]["cine"][:, 3:8])
    assert torch.equal(fixed["lv_mask"], full[1]["lv_mask"][:, 3:8])

    def starts(seed):
        ds = EchoDataset(echo_root, clip_frames=5, generator=seed)
        return [ds[i % 3]["clip_start"] for i in range(8)]

    a, b, c = starts(7), starts(7), starts(8)
    assert a == b and a != c and all(0 <= s <= 11 for s in a)
    item = EchoDataset(echo_root, clip_frames=5, generator=torch.Generator().manual_seed(1))[2]
    s = item["clip_start"]
    assert item["cine"].shape == (1, 5, SIZE, SIZE) and torch.equal(item["cine"], full[2]["cine"][:, s:s + 5])
    long = EchoDataset(echo_root, clip_frames=20)[0]   # longer than the 16-frame cine: zero-padded
    assert long["clip_start"] == 0 and torch.equal(long["cine"][:, :16], full[0]["cine"])
    assert float(long["cine"][:, 16:].abs().sum()) == 0.0


def test_monai_flip_flips_cine_and_mask_together(echo_root):
    plain = EchoDataset(echo_root)
    always = EchoDataset(echo_root, transform=Compose([RandFlipd(keys=["cine", "lv_mask"], spatial_axis=2, prob=1.0)]))
    a, p = always[0], plain[0]
    assert not torch.equal(p["cine"], p["cine"].flip(-1)) and not torch.equal(p["lv_mask"], p["lv_mask"].flip(-1))
    assert torch.equal(a["cine"].as_tensor(), p["cine"].flip(-1))      # spatial_axis=2 is W, the last axis
    assert torch.equal(a["lv_mask"].as_tensor(), p["lv_mask"].flip(-1))
    assert a["ef"] == p["ef"] and a["id"] == p["id"]

    flip = Compose([RandFlipd(keys=["cine", "lv_mask"], spatial_axis=2, prob=0.5)])
    flip.set_random_state(seed=0)
    maybe = EchoDataset(echo_root, transform=flip)
    flipped = []
    for i in range(10):
        a, p = maybe[i % 3], plain[i % 3]
        cine_flipped = torch.equal(a["cine"].as_tensor(), p["cine"].flip(-1))
        assert cine_flipped or torch.equal(a["cine"].as_tensor(), p["cine"])
        mask_flipped = torch.equal(a["lv_mask"].as_tensor(), p["lv_mask"].flip(-1))
        assert mask_flipped == cine_flipped
        flipped.append(cine_flipped)
    assert 0 < sum(flipped) < 10


# ---------------------------------------------------------------------------------------------- EchoNet


def test_echonet_dynamic_reads_the_usgen_copy(echo_root):
    manifest = _manifest_by_id(echo_root)
    ds = EchoNetDynamicDataset(echo_root / "echonet", split=None)
    ours = {item["id"]: item for item in EchoDataset(echo_root)}
    assert sorted(ds.ids) == sorted(manifest) and ds.untraced == []
    for item in ds:
        row = manifest[item["id"]]
        assert item["ef"] == pytest.approx(row["ef"], abs=1e-3)
        assert item["edv"] == pytest.approx(row["edv"], abs=1e-3) and item["esv"] == pytest.approx(row["esv"], abs=1e-3)
        assert item["cine"].shape == (1, 16, SIZE, SIZE) and item["cine"].dtype == torch.float32
        assert torch.equal(item["cine"], ours[item["id"]]["cine"])          # lossless AVI, same pixels
        assert item["lv_trace_frames"].tolist() == sorted({row["ed_frame"], row["es_frame"]})
        assert (item["ed_frame"], item["es_frame"]) == (row["ed_frame"], row["es_frame"])
    for split in ("TRAIN", "VAL", "TEST"):
        assert EchoNetDynamicDataset(echo_root / "echonet", split=split).ids == \
            [i for i, r in manifest.items() if r["split"] == split.lower()]
    clip = EchoNetDynamicDataset(echo_root / "echonet", split=None, clip_frames=6, clip_offset=2)[0]
    assert clip["cine"].shape == (1, 6, SIZE, SIZE) and clip["clip_start"] == 2


def test_echonet_filenames_with_avi_untraced_and_missing_videos(tmp_path, echo_root):
    root = tmp_path / "echonet"
    shutil.copytree(echo_root / "echonet", root)
    with open(root / "FileList.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [r["FileName"] for r in rows]
    with open(root / "FileList.csv", "w", newline="") as fh:          # older releases name files with .avi
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**r, "FileName": r["FileName"] + ".avi"} for r in rows])
    with open(root / "VolumeTracings.csv", newline="") as fh:
        tracings = list(csv.DictReader(fh))
    with open(root / "VolumeTracings.csv", "w", newline="") as fh:    # drop the first video's tracings
        writer = csv.DictWriter(fh, fieldnames=list(tracings[0]))
        writer.writeheader()
        writer.writerows([t for t in tracings if not t["FileName"].startswith(names[0])])
    ds = EchoNetDynamicDataset(root, split=None)
    assert ds.ids == names[1:] and ds.untraced == [names[0]]
    (root / "Videos" / f"{names[1]}.avi").unlink()
    with pytest.raises(UsgenInputError) as err:
        EchoNetDynamicDataset(root, split=None)
    assert err.value.path == str(root / "Videos" / f"{names[1]}.avi")


# ---------------------------------------------------------------------------------------------- enhance


def test_enhance_items_values(enhance_root):
    ds = EnhanceDataset(enhance_root)
    assert len(ds) == 2
    for item in ds:
        for key in ("lq", "hq", "labels", "attenuation"):
            assert item[key].shape == (1, 2, SIZE, SIZE) and item[key].dtype == torch.float32, key
        fov = item["fov_mask"]
        assert fov.shape == (1, 1, SIZE, SIZE) and set(torch.unique(fov).tolist()) == {0.0, 1.0}
        for key in ("lq", "hq"):
            assert 0.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
            assert float((item[key] * (1 - fov)).abs().max()) == 0.0           # no echo outside the fan
            assert float((item[key] * fov).sum()) > 0
        assert not torch.equal(item["lq"], item["hq"])
        labels = item["labels"]
        assert torch.equal(labels, labels.round()) and len(torch.unique(labels)) >= 2
        assert torch.isfinite(item["attenuation"]).all()


# ---------------------------------------------------------------------------------------------- paired DICOM


def test_paired_dicom_pairs_by_name(dicom_pairs, cfd_root):
    ds = PairedDicomDataset.from_folder(dicom_pairs)
    cfd = {item["id"]: item for item in CFDDataset(cfd_root, split=None)}
    assert len(ds) == 3 and ds.ids == sorted(ds.ids) and set(ds.ids) <= set(cfd)
    for item in ds:
        assert item["source"].shape == (3, 4, SIZE, SIZE) and item["target"].shape == (1, 4, SIZE, SIZE)
        assert torch.equal(item["source"], cfd[item["id"]]["cfd"])
        assert torch.equal(item["target"], cfd[item["id"]]["bmode"])
    swapped = PairedDicomDataset.from_folder(dicom_pairs, source_glob="*_bmode.dcm", target_suffix="_cfd.dcm")
    assert swapped.ids == ds.ids and swapped[0]["source"].shape[0] == 1


def test_paired_dicom_errors(tmp_path, dicom_pairs):
    folder = tmp_path / "pairs"
    shutil.copytree(dicom_pairs, folder)
    first = sorted(folder.glob("*_cfd.dcm"))[0]
    stem = first.name.removesuffix("_cfd.dcm")
    short = read_cine(folder / f"{stem}_bmode.dcm")
    write_cine(replace(short, frames=np.array(short.frames[:3]), times=short.times[:3]), folder / f"{stem}_bmode.dcm")
    with pytest.raises(UsgenInputError, match="has 3 frames") as err:
        PairedDicomDataset.from_folder(folder)
    assert err.value.path == str(folder / f"{stem}_bmode.dcm")
    (folder / f"{stem}_bmode.dcm").unlink()
    with pytest.raises(UsgenInputError, match="partner") as err:
        PairedDicomDataset.from_folder(folder)
    assert err.value.path == str(folder / f"{stem}_bmode.dcm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsgenInputError, match="no pairs"):
        PairedDicomDataset.from_folder(empty)


# ---------------------------------------------------------------------------------------------- training


def _train(loader, model, loss_fn, steps: int = 3) -> tuple[list[float], float, float]:
    """3 Adam steps; returns the step losses and the loss on the first batch before and after."""
    fixed = next(iter(loader))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with torch.no_grad():
        before = float(loss_fn(model, fixed))
    losses = []
    batches = iter(loader)
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        after = float(loss_fn(model, fixed))
    return losses, before, after


def _mse(src, dst):
    return lambda model, b: torch.nn.functional.mse_loss(model(b[src]), b[dst])


def _cfd_case(roots):
    ds = CFDDataset(roots["cfd"], split=None)
    loader = DataLoader(ds, batch_size=2, sampler=ds.weighted_sampler(6, torch.Generator().manual_seed(0)))
    return loader, torch.nn.Conv3d(3, 1, kernel_size=1), _mse("cfd", "bmode"), (2, 3, 4, SIZE, SIZE), "cfd"


def _echo_case(roots):
    flip = Compose([RandFlipd(keys=["cine", "lv_mask"], spatial_axis=2, prob=0.5)])
    ds = EchoDataset(roots["echo"], transform=flip, clip_frames=8, generator=0)
    loss = lambda model, b: torch.nn.functional.binary_cross_entropy_with_logits(model(b["cine"]), b["lv_mask"])
    return DataLoader(ds, batch_size=2), torch.nn.Conv3d(1, 1, kernel_size=1), loss, (2, 1, 8, SIZE, SIZE), "cine"


def _echonet_case(roots):
    ds = EchoNetDynamicDataset(roots["echo"] / "echonet", split=None, clip_frames=8, generator=0)
    loss = lambda model, b: torch.nn.functional.mse_loss(model(b["cine"]).mean(dim=(1, 2, 3, 4)), b["ef"].float() / 10)
    return DataLoader(ds, batch_size=2), torch.nn.Conv3d(1, 1, kernel_size=1), loss, (2, 1, 8, SIZE, SIZE), "cine"


def _enhance_case(roots):
    ds = EnhanceDataset(roots["enhance"])

    def loss(model, b):  # inside the field of view only; fov (B,1,1,H,W) broadcasts over time
        err = (model(b["lq"]) - b["hq"]) ** 2 * b["fov_mask"]
        return err.sum() / (b["fov_mask"].sum() * b["lq"].shape[2])

    return DataLoader(ds, batch_size=2), torch.nn.Conv3d(1, 1, kernel_size=1), loss, (2, 1, 2, SIZE, SIZE), "lq"


def _paired_case(roots):
    ds = PairedDicomDataset.from_folder(roots["pairs"])
    loader = DataLoader(ds, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    return loader, torch.nn.Conv3d(3, 1, kernel_size=1), _mse("source", "target"), (2, 3, 4, SIZE, SIZE), "source"


@pytest.mark.parametrize("case", [_cfd_case, _echo_case, _echonet_case, _enhance_case, _paired_case],
                         ids=["cfd", "echo", "echonet", "enhance", "paired"])
def test_tiny_training_loop(case, cfd_root, echo_root, enhance_root, dicom_pairs):
    torch.manual_seed(0)
    roots = {"cfd": cfd_root, "echo": echo_root, "enhance": enhance_root, "pairs": dicom_pairs}
    loader, model, loss_fn, batch_shape, key = case(roots)
    batch = next(iter(loader))
    assert tuple(batch[key].shape) == batch_shape and batch[key].dtype == torch.float32
    assert isinstance(batch["id"], list) and len(batch["id"]) == 2
    losses, before, after = _train(loader, model, loss_fn)
    assert all(np.isfinite(losses)) and np.isfinite(after)
    assert after < before, f"loss on a fixed batch did not drop: {before} -> {after}"
