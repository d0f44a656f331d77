"""The `usgen` command: help everywhere, info figures, convert, progress JSON, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from USGenLib.cli import build_parser
from USGenLib.io import read_cine


def subcommands(parser, prefix=()):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield prefix + (name,), sub
            yield from subcommands(sub, prefix + (name,))


def test_every_subcommand_has_help(usgen):
    commands = list(subcommands(build_parser()))
    assert {c[0] for c, _ in commands} >= {"info", "convert", "demo", "bench"}
    for command, _ in commands:
        with pytest.raises(SystemExit) as exit_info:
            usgen(*command, "--help")
        assert exit_info.value.code == 0, command


def test_info_json_on_echo_cine(dicoms, usgen):
    res = usgen("info", dicoms["ybr_color"], "--json")
    info = json.loads(res.out)
    assert res.code == 0
    assert (info["frames"], info["height"], info["width"], info["channels"]) == (30, 240, 320, 3)
    assert info["spacing_mm"][:2] == pytest.approx([0.510497, 0.510497])
    assert info["fps"] == pytest.approx(30.0, abs=0.01)
    assert info["has_color_flow"] is False


def test_info_json_on_power_doppler_and_palette(dicoms, usgen):
    assert json.loads(usgen("info", dicoms["rgb_color"], "--json").out)["has_color_flow"] is True
    assert json.loads(usgen("info", dicoms["jpeg2k"], "--json").out)["has_color_flow"] is True
    palette = json.loads(usgen("info", dicoms["palette"], "--json").out)
    assert palette["has_color_flow"] is False and palette["color_model"] == "PALETTE COLOR"


def test_info_text_names_the_figures(dicoms, usgen):
    out = usgen("info", dicoms["ybr_color"]).out
    assert "frames:      30" in out and "320 x 240" in out and "colour flow: no" in out


def test_convert_with_progress_json(dicoms, tmp_path, usgen):
    out = tmp_path / "echo.seq.nrrd"
    res = usgen("convert", dicoms["ybr_color"], out, "--progress-json")
    assert res.code == 0
    lines = res.json_lines()
    fractions = [line["progress"] for line in lines]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert lines[-1] == {"progress": 1.0, "stage": "done", "outputs": [str(out.resolve())]}
    assert read_cine(out).num_frames == 30


def test_quiet_convert_prints_nothing(dicoms, tmp_path, usgen):
    res = usgen("convert", dicoms["rgb_color"], tmp_path / "x.seq.nrrd", "--quiet")
    assert res.code == 0 and res.out == "" and res.err == ""


def test_convert_volume_to_segmentation(tmp_path, usgen):
    import SimpleITK as sitk

    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2:6, 2:6] = 2
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "labels.nii.gz"))
    res = usgen("convert", tmp_path / "labels.nii.gz", tmp_path / "labels.seg.nrrd", "--quiet")
    assert res.code == 0
    info = json.loads(usgen("info", tmp_path / "labels.seg.nrrd", "--json").out)
    assert info["type"] == "volume" and info["max"] == 2


def test_module_entry_point_runs_as_a_subprocess(dicoms):
    """How the Slicer module runs it: `python -m USGenLib ...`."""
    proc = subprocess.run([sys.executable, "-m", "USGenLib", "info", str(dicoms["rgb_color"]), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["channels"] == 3


def test_a_reader_that_leaves_early_gets_no_traceback(dicoms):
    """`usgen info X | head -1`: the pipe closes before usgen writes; it stops as SIGPIPE would, quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "USGenLib", "info", str(dicoms["ybr_color"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_demo_writes_sequences_previews_and_index(tmp_path, usgen):
    res = usgen("demo", tmp_path / "demo", "--quiet")
    assert res.code == 0
    demo = tmp_path / "demo"
    page = (demo / "index.html").read_text()
    for stem in ("examples_ybr_color", "examples_rgb_color", "examples_jpeg2k", "examples_palette"):
        assert f"{stem}.seq.nrrd" in page and (demo / f"{stem}.seq.nrrd").exists()
        assert f"{stem}.gif" in page
    echo = read_cine(demo / "examples_ybr_color.seq.nrrd")
    assert echo.num_frames == 30 and echo.spacing[0] == pytest.approx(0.510497, abs=1e-6)
    assert (demo / "contact_sheet.png").stat().st_size > 10_000
    # The simulated sweep: both qualities, same geometry, labels and attenuation beside them.
    low, high = (read_cine(demo / "simulation" / q / "bmode.seq.nrrd") for q in ("low", "high"))
    assert low.frames.shape == high.frames.shape and low.num_frames == 10
    assert np.allclose(low.spacing, high.spacing) and np.allclose(low.origin, high.origin)
    assert "simulation/high_quality.gif" in page and (demo / "simulation" / "labels.gif").exists()
    # Enhancement with the bundled weights: same geometry, and closer to the high quality than the input.
    from USGenLib.io import read_volume
    from USGenLib.metrics import patch_kl, psnr

    enhanced = read_cine(demo / "enhance" / "enhanced.seq.nrrd")
    assert enhanced.frames.shape == low.frames.shape and np.allclose(enhanced.times, low.times)
    fov = read_volume(demo / "simulation" / "low" / "fov_mask.nrrd", kind="labels").array.reshape(low.frames.shape[1:]) > 0
    assert psnr(enhanced.frames, high.frames, fov) > psnr(low.frames, high.frames, fov) + 0.5
    assert patch_kl(high.frames, enhanced.frames, fov) < 0.75 * patch_kl(high.frames, low.frames, fov)
    assert "Sim-to-real enhancement" in page
    # CFD removal with the bundled weights: the real lymph node and a synthetic clip with its truth.
    from USGenLib.io.luma import luma

    assert "Colour-Doppler removal" in page and "SSIM to the ground truth" in page
    node_in = read_cine(demo / "examples_rgb_color.seq.nrrd")
    node_out = read_cine(demo / "cfd" / "lymph_node" / "bmode.seq.nrrd")
    mask = read_cine(demo / "cfd" / "lymph_node" / "cfd_mask.seq.nrrd").frames.astype(bool)
    assert node_out.frames.ndim == 3 and 0.04 < mask.mean() < 0.1
    assert np.array_equal(node_out.frames[~mask], luma(node_in.frames)[~mask])
    assert (demo / "cfd" / "synthetic" / "contact_sheet.png").exists()
    # Generated echo clips (bundled weights): each view at a low and a high EF, LV labels and EFs beside them.
    assert "Synthetic echocardiograms" in page and "EF regressed" in page
    for view in ("a4c", "psax", "plax"):
        for ef in (30, 65):
            cine = read_cine(demo / "echo" / f"{view}_ef{ef}.seq.nrrd")
            lv = read_cine(demo / "echo" / f"{view}_ef{ef}_lv.seq.nrrd")
            assert cine.frames.shape == lv.frames.shape == (16, 112, 112) and lv.frames.max() == 1
            assert f"echo/{view}_ef{ef}.gif" in page


def test_bench_io_prints_figures(usgen):
    from USGenLib.io.bench import bench_io

    result = bench_io(frames=4, height=64, width=80)
    assert result["frames"] == 4 and result["convert_s"] > 0 and result["convert_peak_rss_mb"] > 10
    assert result["seq_nrrd_mb"] < result["raw_mb"] + 0.01


def test_sheet_puts_cines_side_by_side(dicoms, tmp_path, usgen):
    from PIL import Image

    res = usgen("sheet", dicoms["ybr_color"], dicoms["palette"], "--out", tmp_path / "s.png", "--frames", "3",
                "--height", "50", "--quiet")
    assert res.code == 0
    sheet = np.asarray(Image.open(tmp_path / "s.png"))
    assert sheet.shape[0] == 2 * (50 + 16)  # one row per cine
    res = usgen("sheet", dicoms["ybr_color"], "--out", tmp_path / "s.gif")
    assert res.code == 2 and "s.gif: a contact sheet is a .png file" in res.err


def test_cli_reference_documents_every_command():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for command, _ in subcommands(build_parser()):
        assert f"## usgen {' '.join(command)}\n" in doc, command
