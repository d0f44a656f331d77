"""Hostile inputs (issue 11): each case runs `python -m USGenLib ...` in a child whose address space
is capped at 3 GB and must end with exit code 2, exactly one stderr line naming the file and the
problem, nothing in the output folder, and a small peak memory. The files are made by hostile.py."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import files_in
from hostile import build, run_usgen

PEAK_MB = 1000  # every case fails before allocating; the interpreter and its libraries take ~200 MB


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("hostile") / "in")


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# (case, command with {f} for the hostile file and {out} for the output folder, words the line must hold)
CASES = [
    ("gzip_bomb", "convert {f} {out}/x.seq.nrrd", "more than its header declares"),
    ("lying_raw_header", "info {f}", "truncated: header declares"),
    ("lying_gzip_header", "convert {f} {out}/x.dcm", "gzip data can hold"),
    ("lying_volume_nrrd", "convert {f} {out}/x.nii.gz", "gzip data can hold"),
    ("lying_nifti", "info {f}", "gzip data can hold"),
    ("devzero_link", "convert {f} {out}/x.dcm", "is a device"),
    ("fifo_dicom", "convert {f} {out}/x.seq.nrrd", "named pipe"),
    ("nhdr_absolute", "convert {f} {out}/x.nrrd", "not a plain file name beside the header"),
    ("seqnhdr_parent", "convert {f} {out}/x.seq.nrrd", "not a plain file name beside the header"),
    ("mhd_absolute", "info {f}", "not a plain file name beside the header"),
    ("zero_frames", "convert {f} {out}/x.dcm", "empty image"),
    ("zero_spacing", "convert {f} {out}/x.dcm", "zero spacing"),
    ("nan_origin", "convert {f} {out}/x.dcm", "origin must be 3 finite numbers"),
    ("dicom_negative_frames", "convert {f} {out}/x.seq.nrrd", "NumberOfFrames is -1"),
    ("dicom_zero_rows", "convert {f} {out}/x.seq.nrrd", "Rows is 0"),
    ("dicom_nan_orientation", "info {f}", "direction must be an invertible"),
    ("dicom_singular_orientation", "convert {f} {out}/x.seq.nrrd", "direction must be an invertible"),
    ("dicom_negative_spacing", "convert {f} {out}/x.seq.nrrd", "spacing must be positive"),
    ("nan_pixels", "convert {f} {out}/x.dcm", "NaN or infinite"),
    ("nan_pixels", "convert {f} {out}/x.mp4", "NaN or infinity"),
    ("truncated_avi", "convert {f} {out}/x.seq.nrrd", "truncated or corrupt: decoding stops after"),
    ("corrupt_j2k", "convert {f} {out}/x.seq.nrrd", "truncated or corrupt: holds 0 whole frames"),
    ("ct_absurd_spacing", "simulate --ct {f} --size 32x32 --out {out}/sim", "outside 0.0001..10000 mm"),
    ("ct_1e30", "simulate --ct {f} --size 32x32 --out {out}/sim", "not a CT in Hounsfield units"),
    ("deep_pose", "simulate --phantom abdomen --pose {f} --size 32x32 --out {out}/sim", "nested too deeply"),
]


@pytest.mark.parametrize("case,command,problem", CASES, ids=[f"{c}-{cmd.split()[0]}-{n}" for n, (c, cmd, _) in
                                                              enumerate(CASES)])
def test_hostile_file_fails_in_one_line(corpus, out, case, command, problem):
    path = corpus[case]
    code, err, peak_mb = run_usgen(*command.format(f=path, out=out).split(), timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("usgen: error: ") and path.name in lines[0] and problem in lines[0], lines[0]
    assert files_in(out) == []
    assert peak_mb < PEAK_MB, f"{case}: peak {peak_mb:.0f} MB"


# Arguments that asked for gigabytes or overflowed: one line from argparse or the job, before any work.
ARG_CASES = [
    ("simulate --phantom abdomen --rays 1000000 --layers 1000 --out {out}/sim", "--rays: 1000000 is outside"),
    ("simulate --phantom abdomen --rays 1024 --layers 64 --size 4096x4096 --out {out}/sim", "over the --max-memory"),
    ("simulate --phantom abdomen --tilt inf --sweep 3 --out {out}/sim", "--tilt: inf is outside"),
    ("simulate --phantom abdomen --seed 12345678901234567890123 --out {out}/sim", "--seed: 12345678901234567890123"),
    ("simulate --phantom abdomen --size 32x32 --out {out}/nonexist/../sim", "output folder does not exist"),
    ("simulate --phantom abdomen --size 32x32 --out /proc/self/sim", "not writable"),
    ("dataset cfd --n 100000000 --out {out}/ds", "--n must be at most 100000"),
    ("simulate --phantom abdomen --size 32x32 --hu-offset nan --out {out}/sim", "--hu-offset must be a number"),
    ("sheet {dcm} --height 100000 --out {out}/s.png", "--height: 100000 is outside"),
    ("convert {dcm} {out}/" + "x" * 240 + ".seq.nrrd", "output file name is"),
    ("convert {dcm} {out}/x.seq.nrrd --max-memory 1K", "--max-memory 1K is below"),
    ("convert {dcm} {out}/x.seq.nrrd --no-such-option", "unrecognized arguments: --no-such-option"),
]


@pytest.mark.parametrize("command,problem", ARG_CASES, ids=[c.split()[0] + f"-{n}" for n, (c, _) in enumerate(ARG_CASES)])
def test_bad_arguments_fail_in_one_line(dicoms, out, command, problem):
    code, err, peak_mb = run_usgen(*command.format(out=out, dcm=dicoms["ybr_color"]).split(), timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("usgen: error: ") and problem in lines[0], lines[0]
    assert files_in(out) == []
    assert peak_mb < PEAK_MB


def test_budget_refuses_what_would_not_fit(dicoms):
    """Reading a whole clip over the budget is refused by the budget, before allocating."""
    from USGenLib import limits
    from USGenLib.errors import UsgenInputError
    from USGenLib.io import read_cine

    limits.set_memory_budget(1_000_000)
    try:
        with pytest.raises(UsgenInputError, match="over the --max-memory budget"):
            read_cine(dicoms["ybr_color"])
        assert read_cine(dicoms["ybr_color"], lazy=True).num_frames == 30  # streaming needs a frame
    finally:
        limits.set_memory_budget(limits.DEFAULT_MAX_MEMORY)


def test_allow_partial_keeps_the_frames_before_the_damage(corpus, out):
    from USGenLib.io import read_cine

    code, err, _ = run_usgen("convert", corpus["truncated_avi"], out / "x.seq.nrrd", "--allow-partial")
    assert code == 0, err
    assert 0 < read_cine(out / "x.seq.nrrd").num_frames < 40


def test_unusable_frame_times_become_indices_and_say_so(tmp_path):
    from hostile import _nrrd, _seq_fields
    from USGenLib.io import read_cine

    path = _nrrd(tmp_path / "t.seq.nrrd", _seq_fields(times="nan inf 3"), bytes(16 * 12 * 3))
    cine = read_cine(path)
    assert np.array_equal(cine.times, [0, 1, 2]) and "frame indices" in cine.meta["times_from"]


def test_constant_ct_is_a_ct_not_a_label_map(corpus):
    from USGenLib.io import read_volume
    from USGenLib.io.volume import TISSUE_LABELS
    from USGenLib.simulation import TISSUES

    assert TISSUE_LABELS == len(TISSUES)
    assert read_volume(corpus["ct_ok"]).kind == "ct"  # int16, constant 40 HU: once refused as labels


def test_long_clips_stream(tmp_path):
    """Converting a clip 10x longer allocates no more: frames go from decoder to writer one at a
    time (numpy's allocations are traced by tracemalloc); info decodes only a sample. Both clips
    are longer than the 16 frames sampled to tell grey from colour."""
    import tracemalloc

    from hostile import _video
    from USGenLib.cli import main
    from USGenLib.info import describe

    frame_mb = 120 * 160 * 3 / 2 ** 20
    for ending in (".seq.nrrd", ".dcm"):
        peaks = {}
        for frames in (24, 240):
            clip = tmp_path / f"c{frames}.avi"
            if not clip.exists():
                _video(clip, frames=frames, size=(120, 160))
            tracemalloc.start()
            assert main(["convert", str(clip), str(tmp_path / f"c{frames}{ending}"), "--quiet"]) == 0
            peaks[frames] = tracemalloc.get_traced_memory()[1] / 2 ** 20
            tracemalloc.stop()
        assert peaks[240] - peaks[24] < 24 * frame_mb, (ending, peaks)  # holding them would add 216 frames
    tracemalloc.start()
    info = describe(tmp_path / "c240.avi")
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    assert info["frames"] == 240 and peak < 120 * frame_mb, peak  # under half of the clip
