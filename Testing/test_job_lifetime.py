"""Jobs end as a whole: killed mid-write (SIGTERM, SIGKILL) they leave no temporary, no output and no
process behind; simulate's five files appear together; stale temporaries go on the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from USGenLib.io import write_seq_nrrd
from USGenLib.io.atomic import atomic_folder, remove_stale_temporaries, temporary_name
from USGenLib.types import Cine

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
ROOT = Path(__file__).resolve().parents[1]


def _usgen(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "USGenLib", *map(str, args), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (no psutil)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent_pid = todo.pop()
        children = {p for p, parent in parents.items() if parent == parent_pid} - found
        todo += children
        found |= children
    return found


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".usgen-"))


@pytest.fixture(scope="module")
def big_cine(tmp_path_factory) -> Path:
    """A cine whose .mp4 encoding takes seconds: time to kill the job while ffmpeg writes."""
    path = tmp_path_factory.mktemp("input") / "big.seq.nrrd"
    frames = np.random.default_rng(0).integers(0, 256, (200, 240, 320), dtype=np.uint8)
    return write_seq_nrrd(Cine(frames), path)


def _start_and_catch_writing(big_cine: Path, out: Path) -> tuple[subprocess.Popen, set[int]]:
    job = _usgen("convert", big_cine, out / "clip.mp4")
    assert _wait_for(lambda: _temporaries(out) and _descendants(job.pid)), "the job never started writing"
    return job, _descendants(job.pid)  # ffmpeg


def test_sigterm_mid_write_cleans_up_and_stops_ffmpeg(big_cine, tmp_path):
    job, helpers = _start_and_catch_writing(big_cine, tmp_path)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=30)
    assert job.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    assert os.listdir(tmp_path) == []
    assert _wait_for(lambda: not any(map(_alive, helpers)), 5)


def test_sigkill_mid_write_kills_ffmpeg_and_the_next_run_removes_the_temporary(big_cine, tmp_path):
    job, helpers = _start_and_catch_writing(big_cine, tmp_path)
    job.kill()
    job.wait()
    assert _wait_for(lambda: not any(map(_alive, helpers)), 5), "ffmpeg outlived its job"
    stale = _temporaries(tmp_path)
    assert stale and not (tmp_path / "clip.mp4").exists()
    small = tmp_path.parent / "small.seq.nrrd"
    write_seq_nrrd(Cine(np.zeros((2, 8, 8), np.uint8)), small)
    again = _usgen("convert", small, tmp_path / "small.seq.nrrd")
    assert again.wait(timeout=60) == 0, again.stderr.read()
    assert os.listdir(tmp_path) == ["small.seq.nrrd"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_dataset_leaves_no_worker_and_no_folder(tmp_path, sig):
    job = _usgen("dataset", "cfd", "--n", "400", "--size", "64x64", "--frames", "4", "--workers", "2",
                 "--out", tmp_path / "data")
    assert _wait_for(lambda: len(_descendants(job.pid)) >= 2 and any(
        (tmp_path / t).is_dir() and any((tmp_path / t).glob("cfd_*")) for t in _temporaries(tmp_path))), \
        "the workers never wrote an item"
    workers = _descendants(job.pid)
    job.send_signal(sig)
    job.wait(timeout=30)
    assert _wait_for(lambda: not any(map(_alive, workers)), 10), "a worker outlived its job"
    if sig == signal.SIGTERM:
        assert job.returncode == 128 + signal.SIGTERM
        assert os.listdir(tmp_path) == []
    else:  # nothing could clean up; the next run into the same folder does
        assert len(_temporaries(tmp_path)) == 1
        again = _usgen("dataset", "cfd", "--n", "1", "--size", "32x32", "--frames", "1", "--out", tmp_path / "d2")
        assert again.wait(timeout=60) == 0, again.stderr.read()
        assert os.listdir(tmp_path) == ["d2"]


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("a")
            raise RuntimeError("late failure")
    assert os.listdir(tmp_path) == []
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path / "out") == ["a.txt"]
    (tmp_path / "out" / "mine.txt").write_text("keep")  # a re-run into a folder with other files
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("b")
    assert sorted(os.listdir(tmp_path / "out")) == ["a.txt", "mine.txt"]
    assert (tmp_path / "out" / "a.txt").read_text() == "b" and _temporaries(tmp_path) == []


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = temporary_name(tmp_path / "x.seq.nrrd")  # this process's own
    live.write_bytes(b"")
    stale = tmp_path / f".usgen-{dead.pid}-0123abcd-x.mp4"
    stale.write_bytes(b"")
    (tmp_path / f".usgen-{dead.pid}-0123abcd-folder").mkdir()
    (tmp_path / ".usgen-notes.txt").write_text("not a temporary name")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale.name, f".usgen-{dead.pid}-0123abcd-folder"])
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, ".usgen-notes.txt"])


def test_simulate_writes_its_five_files_as_a_whole(tmp_path, usgen, monkeypatch):
    def broken_volume_writer(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("USGenLib.io.write_volume", broken_volume_writer)  # fails after three cines
    res = usgen("simulate", "--phantom", "abdomen", "--size", "32x32", "--out", tmp_path / "sim")
    assert res.code != 0
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    res = usgen("simulate", "--phantom", "abdomen", "--size", "32x32", "--out", tmp_path / "sim")
    assert res.code == 0, res.err
    assert sorted(os.listdir(tmp_path / "sim")) == sorted(["bmode.seq.nrrd", "labels.seq.nrrd", "attenuation.seq.nrrd",
                                                         "fov_mask.nrrd", "meta.json"])
