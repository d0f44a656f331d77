"""The Slicer module's plain part (USGenExtension/USGen/USGenPlan.py), without Slicer: the command
line of every job against the real `usgen` parser, and the load plan of every job and output kind
on files the library writes (what the module loads, into which browser, as which node class,
which label maps become segmentations with which segments, which view shows what)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_cine
from USGenLib.cli import build_parser, enhance_default_action
from USGenLib.io import write_seq_nrrd, write_volume
from USGenLib.simulation.tissues import DISPLAY_COLORS, TISSUES
from USGenLib.types import Cine, Volume

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "USGenExtension" / "USGen"))
import USGenPlan as plan  # noqa: E402  (the module's folder is on sys.path in Slicer too)


def _subcommands():
    parser = build_parser()
    sub = next(action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction")
    return parser, sub.choices


def _parse(arguments):
    """Parse a module command line (``-m USGenLib <job> ...``) as `usgen` does (main's argv rewrite included)."""
    assert arguments[:2] == ["-m", "USGenLib"] and arguments[-1] == "--progress-json"
    return build_parser().parse_args(enhance_default_action([str(a) for a in arguments[2:]]))


def _job_available(*words):
    _parser, choices = _subcommands()
    if words[0] not in choices:
        return False
    if len(words) == 1:
        return True
    nested = next((a for a in choices[words[0]]._actions if a.__class__.__name__ == "_SubParsersAction"), None)
    return nested is not None and words[1] in nested.choices


# --- command lines ------------------------------------------------------------------------------


def test_simulate_command_line_parses(tmp_path):
    args = _parse(plan.simulateArguments(tmp_path / "out", ct=tmp_path / "ct.nrrd", pose=tmp_path / "pose.json",
                                         probe="linear", quality="high", sweep=12, size=(128, 96), seed=4, device="cpu"))
    assert (args.ct, args.pose, args.out) == (tmp_path / "ct.nrrd", tmp_path / "pose.json", tmp_path / "out")
    assert (args.probe, args.quality, args.sweep, args.size, args.seed, args.device) == ("linear", "high", 12, "128x96", 4, "cpu")
    assert args.progress_json
    args = _parse(plan.simulateArguments(tmp_path / "o", phantom="abdomen"))
    assert args.phantom == "abdomen" and args.pose is None and args.device == "auto"
    with pytest.raises(ValueError):
        plan.simulateArguments(tmp_path, ct="a", phantom="b")
    with pytest.raises(ValueError):
        plan.simulateArguments(tmp_path, phantom="abdomen", device="gpu")


def test_simulate_enhance_flag(tmp_path):
    arguments = plan.simulateArguments(tmp_path, phantom="abdomen", enhance=True)
    assert "--enhance" in arguments
    assert _parse(arguments).enhance
    with pytest.raises(ValueError, match="low-quality"):  # usgen refuses it too; the panel says so at once
        plan.simulateArguments(tmp_path, phantom="abdomen", quality="high", enhance=True)


def test_cfd_remove_and_dataset_command_lines_parse(tmp_path):
    args = _parse(plan.cfdRemoveArguments(tmp_path / "in.seq.nrrd", tmp_path / "out", device="cuda"))
    assert (args.input, args.out_dir, args.device) == (tmp_path / "in.seq.nrrd", tmp_path / "out", "cuda")
    args = _parse(plan.datasetArguments("echo", 7, tmp_path / "data", seed=3))
    assert (args.kind, args.n, args.out, args.seed) == ("echo", 7, tmp_path / "data", 3)
    args = _parse(plan.usgenArguments("convert", "/d/a b.dcm", "/o/a b.seq.nrrd"))
    assert (str(args.input), str(args.output)) == ("/d/a b.dcm", "/o/a b.seq.nrrd")


def test_enhance_and_echo_command_lines(tmp_path):
    enhance = plan.enhanceArguments(tmp_path / "sim", tmp_path / "out", weights=tmp_path / "w.safetensors", device="cpu")
    assert enhance == ["-m", "USGenLib", "enhance", str(tmp_path / "sim"), str(tmp_path / "out"), "--weights",
                       str(tmp_path / "w.safetensors"), "--device", "cpu", "--progress-json"]
    echo = plan.echoArguments(tmp_path / "e", view="PSAX", ef=42.5, n=3, frames=16, seed=9, device="auto")
    assert echo == ["-m", "USGenLib", "echo", "generate", "--view", "PSAX", "--ef", "42.5", "--n", "3", "--frames", "16",
                    "--seed", "9", "--device", "auto", "--out", str(tmp_path / "e"), "--progress-json"]
    with pytest.raises(ValueError):
        plan.echoArguments(tmp_path, view="A2C")
    spread = plan.echoArguments(tmp_path / "s", view="all", ef=20, efHigh=80, n=6)
    assert spread[4:10] == ["--view", "all", "--ef-range", "20", "80", "--n"]
    # Once the commands are on this branch, the real parser must take these lines as they are.
    if _job_available("enhance"):
        args = _parse(enhance)
        assert args.device == "cpu"
    if _job_available("echo", "generate"):
        args = _parse(echo)
        assert (args.view, float(args.ef), args.n, args.frames, args.device) == ("PSAX", 42.5, 3, 16, "auto")
        args = _parse(spread)
        assert (args.view, args.ef, args.ef_range, args.n) == ("all", None, [20.0, 80.0], 6)


# --- load plans ---------------------------------------------------------------------------------


def _grey(frames=4, times=None):
    cine = make_cine(frames=frames, h=12, w=16)
    if times is not None:
        cine = Cine(frames=cine.frames, spacing=cine.spacing, origin=cine.origin, direction=cine.direction, times=times)
    return cine


def _labels(frames=4, values=(0, 1), times=None):
    base = _grey(frames, times)
    data = np.asarray(values, dtype=np.uint8)[np.arange(frames * 12 * 16) % len(values)].reshape(frames, 12, 16)
    return Cine(frames=data, spacing=base.spacing, origin=base.origin, direction=base.direction, times=base.times)


def _simulate_folder(folder, frames=3, enhanced=False):
    folder.mkdir(parents=True)
    times = np.arange(frames) * 0.1
    write_seq_nrrd(_grey(frames, times), folder / "bmode.seq.nrrd")
    write_seq_nrrd(_labels(frames, (0, 3, 6), times), folder / "labels.seq.nrrd", labels=True)
    write_seq_nrrd(_grey(frames, times), folder / "attenuation.seq.nrrd")
    write_volume(Volume(array=np.ones((1, 12, 16), np.uint8)), folder / "fov_mask.nrrd")
    from USGenLib.simulation.tissues import tissue_table

    (folder / "meta.json").write_text(json.dumps({"device": "cpu", "timing": {"simulate_s": 1.25},
                                                  "tissue_table": tissue_table()}))
    if enhanced:
        write_seq_nrrd(_grey(frames, times), folder / "enhanced.seq.nrrd")
    return folder


def test_tissue_segments_follow_the_tissue_table():
    from USGenLib.simulation.tissues import tissue_table

    segments = plan.tissueSegments({"tissue_table": tissue_table()})
    assert [(s.labelValue, s.name) for s in segments] == [(t.label, t.name) for t in TISSUES if t.label]
    assert [s.color for s in segments] == [DISPLAY_COLORS[t.label] for t in TISSUES if t.label]
    assert segments[2].segmentId == "soft_tissue"
    # ImportLabelmapToSegmentationNode maps label value i to the i-th id: every frame the same ids
    assert plan.labelValuesToIds(segments) == [plan.segmentIdFor(t.name) for t in TISSUES if t.label]
    assert plan.labelValuesToIds([plan.Segment(2, "b", "B", (0, 0, 0))]) == ["", "b"]


def test_plan_simulate(tmp_path):
    folder = _simulate_folder(tmp_path / "sim")
    outputs = [str(folder / n) for n in ("bmode.seq.nrrd", "labels.seq.nrrd", "attenuation.seq.nrrd", "fov_mask.nrrd",
                                         "meta.json")]
    p = plan.loadPlan("simulate", outputs, inputName="CT")
    (browser,) = p.browsers
    assert not browser.joinInput and browser.name == "CT browser"
    names = [s.name for s in browser.sequences]
    assert names == ["CT B-mode", "CT attenuation", "CT labels"]  # the picture leads as master
    classes = {s.name: (s.nodeClass, s.proxyClass) for s in browser.sequences}
    assert classes["CT labels"] == (plan.LABELMAP, plan.SEGMENTATION)
    assert classes["CT B-mode"] == (plan.SCALAR, plan.SCALAR)
    labels = browser.sequences[2]
    assert [s.name for s in labels.segments][:3] == ["water", "fat", "soft tissue"]
    assert all(s.frames == 3 and s.indexValues == ["0.0", "0.1", "0.2"] and s.indexUnit == "s" for s in browser.sequences)
    assert p.labelVolumes == [(str(folder / "fov_mask.nrrd"), "CT fov_mask")]
    assert p.device == "cpu" and p.problems == []
    assert ("simulate", ["device: cpu", "simulate_s: 1.25"]) in p.reports
    assert browser.sequences[0].view == "Red" and p.layout == plan.LAYOUT_SIDE_BY_SIDE  # B-mode | attenuation
    assert browser.sequences[1].view == "Yellow" and p.linkViews


def test_plan_simulate_with_enhance_shows_enhanced_beside_bmode(tmp_path):
    folder = _simulate_folder(tmp_path / "sim", enhanced=True)
    p = plan.loadPlan("simulate", [str(folder)], inputName="CT")
    views = {s.name: s.view for s in p.sequences}
    assert views["CT B-mode"] == "Red" and views["CT enhanced"] == "Yellow" and views["CT attenuation"] == ""


def test_plan_cfd_remove_joins_the_input_browser(tmp_path):
    times = np.array([0.0, 0.033, 0.066, 0.1])
    write_seq_nrrd(make_cine(rgb=True, frames=4, h=12, w=16), tmp_path / "input.seq.nrrd")
    colour = make_cine(rgb=True, frames=4, h=12, w=16)
    colour = Cine(frames=colour.frames, spacing=colour.spacing, origin=colour.origin, direction=colour.direction, times=times)
    write_seq_nrrd(colour, tmp_path / "input.seq.nrrd")
    out = tmp_path / "out"
    out.mkdir()
    write_seq_nrrd(_grey(4, times), out / "bmode.seq.nrrd")
    write_seq_nrrd(_labels(4, (0, 1), times), out / "cfd_mask.seq.nrrd", labels=True)
    (out / "report.json").write_text(json.dumps({"frames": 4, "device": "cuda:0", "coverage": 0.125,
                                                 "weights": "default.safetensors", "nested": {"ignored": 1}}))
    outputs = [str(out / "bmode.seq.nrrd"), str(out / "cfd_mask.seq.nrrd"), str(out / "report.json")]
    p = plan.loadPlan("cfd remove", outputs, inputSequence=str(tmp_path / "input.seq.nrrd"), inputName="doppler")
    (browser,) = p.browsers
    assert browser.joinInput
    assert [(s.name, s.proxyClass) for s in browser.sequences] == [("doppler B-mode", plan.SCALAR),
                                                                   ("doppler CFD mask", plan.SEGMENTATION)]
    assert [(g.labelValue, g.segmentId, g.name) for g in browser.sequences[1].segments] == [(1, "cfd", "CFD")]
    assert browser.sequences[0].view == "Yellow"  # the input stays in Red
    assert (p.layout, p.linkViews) == (plan.LAYOUT_SIDE_BY_SIDE, True)
    assert p.device == "cuda:0" and p.problems == []
    assert p.reports[0][1][:3] == ["device: cuda:0", "frames: 4", "coverage: 0.125"]

    # An output whose index values differ from the input's would not play frame by frame with it.
    write_seq_nrrd(_grey(4, times * 2), out / "bmode.seq.nrrd")
    p = plan.loadPlan("cfd remove", outputs, inputSequence=str(tmp_path / "input.seq.nrrd"))
    assert len(p.problems) == 1 and "bmode.seq.nrrd" in p.problems[0]


def test_plan_enhance_joins_the_simulation(tmp_path):
    sim = _simulate_folder(tmp_path / "sim")
    out = tmp_path / "enh"
    out.mkdir()
    write_seq_nrrd(_grey(3, np.arange(3) * 0.1), out / "enhanced.seq.nrrd")
    (out / "report.json").write_text(json.dumps({"device": "cpu", "frames": 3}))
    p = plan.loadPlan("enhance", [str(out / "enhanced.seq.nrrd"), str(out / "report.json")],
                      inputSequence=str(sim / "bmode.seq.nrrd"), inputName="CT")
    (browser,) = p.browsers
    assert browser.joinInput and [s.name for s in browser.sequences] == ["CT enhanced"]
    assert browser.sequences[0].view == "Yellow" and p.layout == plan.LAYOUT_SIDE_BY_SIDE
    assert p.problems == [] and p.device == "cpu"


def test_plan_echo_clips_each_in_a_browser_with_lv_segmentation(tmp_path):
    out = tmp_path / "echo"
    files = []
    for number, ef in enumerate((52.0, 57.5)):
        clip = out / f"echo_{number:05d}"
        clip.mkdir(parents=True)
        write_seq_nrrd(_grey(8, np.arange(8) / 30), clip / "cine.seq.nrrd")
        write_seq_nrrd(_labels(8, (0, 1), np.arange(8) / 30), clip / "lv.seq.nrrd", labels=True)
        (clip / "report.json").write_text(json.dumps({"view": "A4C", "requested_ef": 55.0, "regressed_ef": ef,
                                                      "device": "cpu", "timings": {"video": 2.5}, "reid": {}}))
        files += [clip / "cine.seq.nrrd", clip / "lv.seq.nrrd", clip / "report.json"]
    (out / "manifest.csv").write_text("id,ef\necho_00000,52\necho_00001,57.5\n")
    for outputs in ([str(f) for f in files] + [str(out / "manifest.csv")], [str(out)]):  # files or the folder
        p = plan.loadPlan("echo generate", outputs)
        assert [b.name for b in p.browsers] == ["echo_00000 cine browser", "echo_00001 cine browser"]
        for browser in p.browsers:
            assert not browser.joinInput
            assert [s.proxyClass for s in browser.sequences] == [plan.SCALAR, plan.SEGMENTATION]
            assert [(g.segmentId, g.name) for g in browser.sequences[1].segments] == [("lv", "LV")]
        assert [b.sequences[0].view for b in p.browsers] == ["Red", "Yellow"]
        assert p.layout == plan.LAYOUT_SIDE_BY_SIDE
        assert [title for title, _lines in p.reports] == ["echo_00000", "echo_00001"]
        assert p.reports[1][1] == ["device: cpu", "view: A4C", "requested_ef: 55", "regressed_ef: 57.5", "video s: 2.5"]
        assert p.problems == []


def test_plan_convert_and_dataset(tmp_path):
    write_seq_nrrd(make_cine(rgb=True, frames=5, h=12, w=16), tmp_path / "clip.seq.nrrd")
    p = plan.loadPlan("convert", [str(tmp_path / "clip.seq.nrrd")])
    (sequence,) = p.sequences
    assert (sequence.name, sequence.nodeClass, sequence.frames, sequence.view) == ("clip", plan.VECTOR, 5, "Red")
    assert p.layout == "" and not p.linkViews  # the user's layout stays; the cine goes to the red view

    data = tmp_path / "data"
    (data / "items" / "cfd_00000").mkdir(parents=True)
    (data / "manifest.csv").write_text("id,split\ncfd_00000,train\ncfd_00001,val\n")
    for outputs in ([str(data / "manifest.csv")], [str(data)]):  # `usgen dataset` names its manifest
        p = plan.loadPlan("dataset", outputs)
        assert p.browsers == [] and p.folder == str(data)
        assert p.reports == [("Training data", ["items: 2", f"folder: {data}"])]


def test_plan_of_a_real_dataset_run(usgen, tmp_path):
    res = usgen("dataset", "cfd", "--n", "2", "--size", "32x32", "--frames", "2", "--out", tmp_path / "d",
                "--progress-json")
    assert res.code == 0, res.err
    p = plan.loadPlan("dataset", res.json_lines()[-1]["outputs"])
    assert Path(p.folder) == tmp_path / "d" and p.reports[0][1][0] == "items: 2"


def test_plan_of_real_simulate_outputs(usgen, tmp_path):
    res = usgen("simulate", "--phantom", "abdomen", "--sweep", "2", "--size", "32x32", "--device", "cpu",
                "--out", tmp_path / "sim", "--progress-json")
    assert res.code == 0, res.err
    outputs = res.json_lines()[-1]["outputs"]
    p = plan.loadPlan("simulate", outputs, inputName="abdomen")
    labels = next(s for s in p.sequences if s.name == "abdomen labels")
    assert labels.nodeClass == plan.LABELMAP and labels.frames == 2
    assert [s.name for s in labels.segments] == [t.name for t in TISSUES if t.label]
    assert p.device == "cpu" and p.problems == []


def test_default_probe_pose_matches_the_simulator():
    """The transform the panel offers is usgen's default pose (before the skin contact slide)."""
    torch = pytest.importorskip("torch")
    from USGenLib.simulation import Simulator

    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    volume = Volume(array=np.full((10, 12, 14), 3, np.uint8), spacing=(0.8, 1.2, 2.0), origin=(5.0, -3.0, 7.0),
                    direction=rotation, kind="labels")
    simulator = Simulator(volume, size=(16, 16), device=torch.device("cpu"))
    lps = simulator.default_pose(skin_contact=False)
    ras_from_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    ijk_to_ras = ras_from_lps @ volume.index_to_physical()
    pose = np.array(plan.defaultProbePose(ijk_to_ras.tolist(), volume.shape_ijk))
    assert np.allclose(pose, ras_from_lps @ lps)


def test_pose_json_reads_back_as_the_lps_pose(tmp_path):
    from USGenLib.simulation import read_poses

    probe_to_ras = [[0.0, -1.0, 0.0, 10.0], [1.0, 0.0, 0.0, -4.0], [0.0, 0.0, 1.0, 2.5], [0.0, 0.0, 0.0, 1.0]]
    (tmp_path / "pose.json").write_text(plan.poseJson(probe_to_ras))
    (pose,) = read_poses(tmp_path / "pose.json")
    assert np.allclose(pose, np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.array(probe_to_ras))


def test_output_folder_name():
    assert plan.outputFolderName("cfd remove", "US cine: 1/2") == "cfd-remove-US_cine_1_2"
    assert plan.outputFolderName("echo generate") == "echo-generate"


@pytest.mark.skipif(not _job_available("echo", "generate"), reason="usgen echo generate (issue 9) is not on this branch")
def test_plan_of_real_echo_outputs(usgen, tmp_path, request):
    weights = []
    if not list((ROOT / "Resources" / "weights" / "echo").glob("*.safetensors")):
        try:  # the echo tests' tiny networks (session fixture in conftest.py), where none are bundled
            weights = ["--weights-dir", request.getfixturevalue("echo_tiny_weights")]
        except pytest.FixtureLookupError:
            pytest.skip("no echo weights: none bundled and no echo_tiny_weights fixture")
    res = usgen("echo", "generate", "--view", "A4C", "--ef", "55", "--n", "1", "--frames", "8", "--device", "cpu",
                *weights, "--out", tmp_path / "e", "--progress-json")
    assert res.code == 0, res.err
    p = plan.loadPlan("echo generate", res.json_lines()[-1]["outputs"])
    (browser,) = p.browsers
    cine, lv = browser.sequences
    assert (cine.nodeClass, lv.nodeClass, lv.proxyClass) == (plan.SCALAR, plan.LABELMAP, plan.SEGMENTATION)
    assert cine.frames == lv.frames == 8 and cine.indexValues == lv.indexValues
    assert [g.name for g in lv.segments] == ["LV"]
    assert any(line.startswith("regressed_ef: ") for line in p.reports[0][1])
    assert p.problems == []


@pytest.mark.skipif(not _job_available("enhance"), reason="usgen enhance (issue 8) is not on this branch")
def test_plan_of_real_enhance_outputs(usgen, tmp_path):
    assert usgen("simulate", "--phantom", "abdomen", "--sweep", "2", "--size", "64x64", "--device", "cpu",
                 "--out", tmp_path / "sim", "--quiet").code == 0
    # An untrained tiny generator: what matters here is the files the job writes, not how real they look.
    import torch
    from USGenLib.enhance.networks import CONFIGS, generator
    from USGenLib.train.weights import save_weights

    torch.manual_seed(0)
    config = CONFIGS["tiny"]
    weights = save_weights(tmp_path / "tiny.safetensors", "enhance", generator(config).state_dict(),
                           {**config.to_dict(), "mode": "paired"}, {"title": "untrained", "command": "test", "data": "none"})
    res = usgen("enhance", tmp_path / "sim", tmp_path / "enh", "--weights", weights, "--device", "cpu", "--progress-json")
    assert res.code == 0, res.err
    p = plan.loadPlan("enhance", res.json_lines()[-1]["outputs"], inputSequence=str(tmp_path / "sim" / "bmode.seq.nrrd"),
                      inputName="abdomen")
    (browser,) = p.browsers
    assert browser.joinInput and [(s.name, s.nodeClass) for s in browser.sequences] == [("abdomen enhanced", plan.SCALAR)]
    assert p.problems == []  # the same index values as the simulation's B-mode: it plays frame by frame with it
    assert p.device == "cpu"
