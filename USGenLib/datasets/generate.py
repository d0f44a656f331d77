"""`usgen dataset cfd|echo|enhance`: generate a paired data set into a folder, in parallel, deterministically.

Each item is made from its own random stream, ``SeedSequence([seed, kind, index])``, so the data set
does not depend on the number of worker processes. Each item is written into a hidden temporary
folder and renamed into place; the whole data set is built in a hidden sibling of DIR and renamed
to DIR at the end (``atomic_folder``), so a failure, Ctrl-C or SIGTERM leaves nothing half-written
at DIR. Workers die with the job (``exit_with_parent``), also when it is killed outright; the next
run into the same parent folder removes the killed job's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import active_children, get_context
from pathlib import Path

import numpy as np

from USGenLib import progress as _progress
from USGenLib.datasets.item_files import item_id
from USGenLib.datasets.layouts.manifest import (KINDS, MANIFEST_NAME, assign_splits, coverage_quartiles,
                                                manifest_columns, write_manifest)
from USGenLib.errors import UsgenInputError
from USGenLib.io.atomic import atomic_folder, atomic_write_text
from USGenLib.lifetime import exit_with_parent
from USGenLib.limits import check_output_name, probe_writable

KIND_CODES = {"cfd": 1, "echo": 2, "enhance": 3}
DEFAULT_SIZE = {"cfd": (256, 256), "echo": (112, 112), "enhance": (256, 256)}
DEFAULT_FRAMES = {"cfd": 16, "echo": 32, "enhance": 8}
MIN_FRAMES = {"cfd": 1, "echo": 8, "enhance": 1}
VIEWS = ("A4C", "PSAX", "PLAX")
MIN_SIDE, MAX_SIDE = 32, 1024
MAX_ITEMS = 100_000


@dataclass
class DatasetRequest:
    """What to generate. size is (H, W) pixels; frames per clip; views for echo."""

    kind: str
    n: int
    out: Path
    seed: int = 0
    size: tuple[int, int] | None = None
    frames: int | None = None
    workers: int = 1
    views: tuple[str, ...] = VIEWS
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)
        if self.kind not in KINDS:
            raise UsgenInputError(None, f"unknown data-set kind {self.kind!r} (one of {', '.join(KINDS)})")
        if not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise UsgenInputError(None, f"--n must be a positive number of items, got {self.n}")
        if self.n > MAX_ITEMS:  # the job list and the pool's futures grow with n
            raise UsgenInputError(None, f"--n must be at most {MAX_ITEMS} items per run, got {self.n} "
                                        "(make several data sets with different --seed)")
        if self.seed < 0 or self.seed >= 2 ** 63:
            raise UsgenInputError(None, f"--seed must be a non-negative integer, got {self.seed}")
        if self.workers < 1 or self.workers > 64:
            raise UsgenInputError(None, f"--workers must be at least 1 and at most 64, got {self.workers}")
        self.size = tuple(int(s) for s in (self.size or DEFAULT_SIZE[self.kind]))
        if len(self.size) != 2 or min(self.size) < MIN_SIDE or max(self.size) > MAX_SIDE:
            raise UsgenInputError(None, f"--size must be HxW with sides {MIN_SIDE}..{MAX_SIDE} pixels, got {self.size}")
        self.frames = int(self.frames if self.frames is not None else DEFAULT_FRAMES[self.kind])
        if self.frames < MIN_FRAMES[self.kind] or self.frames > 2000:
            raise UsgenInputError(None, f"--frames must lie in {MIN_FRAMES[self.kind]}..2000 for {self.kind}, "
                                        f"got {self.frames}")
        views = tuple(v.upper() for v in self.views)
        bad = [v for v in views if v not in VIEWS]
        if bad or not views:
            raise UsgenInputError(None, f"unknown view(s) {', '.join(bad) or '(none)'} (use {', '.join(VIEWS)})")
        self.views = views


def item_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), KIND_CODES[kind], int(index)]))


def _check_out(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsgenInputError(parent, "output folder's parent does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsgenInputError(parent, "output folder's parent is not writable")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsgenInputError(out, "already exists and is not an empty folder (choose a new --out)")
    check_output_name(out)
    probe_writable(parent)


def _jobs(req: DatasetRequest, root: Path) -> list[dict]:
    n = req.n
    order = np.random.default_rng(np.random.SeedSequence([req.seed, KIND_CODES[req.kind], 0xBA1])).permutation(n)
    jobs = []
    for i in range(n):
        job = {"kind": req.kind, "index": i, "seed": req.seed, "size": req.size, "frames": req.frames,
               "root": str(root), "options": dict(req.options)}
        if req.kind == "cfd":
            job["stratum"] = int(order[i] % 4)          # balanced target-coverage quartiles
        elif req.kind == "echo":
            job["view"] = req.views[int(order[i]) % len(req.views)]
        jobs.append(job)
    return jobs


def make_item(job: dict) -> dict:
    """Make one item into ``root/<id>`` (through a hidden temporary folder); return its manifest row."""
    kind, index = job["kind"], job["index"]
    root = Path(job["root"])
    iid = item_id(kind, index)
    tmp = root / f".tmp-{iid}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        rng = item_rng(job["seed"], kind, index)
        if kind == "cfd":
            from USGenLib.datasets.items import write_cfd_item as maker
        elif kind == "echo":
            from USGenLib.datasets.items import write_echo_item as maker
        else:
            from USGenLib.datasets.items import write_enhance_item as maker
        row = maker(job, rng, tmp)
        final = root / iid
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    row.update({"id": iid, "kind": kind, "path": iid, "seed": job["seed"]})
    return row


def _worker_init(parent_pid: int) -> None:
    exit_with_parent(parent_pid)
    _progress.configure("quiet")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def generate_dataset(req: DatasetRequest) -> Path:
    """Generate the data set ``req`` describes; return DIR (holding manifest.csv)."""
    out = req.out
    _check_out(out)
    with atomic_folder(out) as build:
        jobs = _jobs(req, build)
        if req.kind == "echo":
            (build / "echonet" / "Videos").mkdir(parents=True)
        rows: list[dict] = []
        with _progress.progress(req.n, f"dataset {req.kind}", unit="item") as rep:
            if req.workers == 1:
                for job in jobs:
                    rows.append(make_item(job))
                    rep.update(1, message=f"item {len(rows)}/{req.n}")
            else:
                for row in _in_workers(jobs, req.workers):
                    rows.append(row)
                    rep.update(1, message=f"item {len(rows)}/{req.n}")
        rows.sort(key=lambda r: r["id"])
        splits = assign_splits(req.n, req.seed)
        for r, s in zip(rows, splits):
            r["split"] = s
        if req.kind == "cfd":
            for r, q in zip(rows, coverage_quartiles([r["coverage"] for r in rows])):
                r["coverage_quartile"] = int(q)
        if req.kind == "echo":
            from USGenLib.datasets.echonet import write_echonet_tables

            write_echonet_tables(rows, build / "echonet")
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        write_manifest(public, build / MANIFEST_NAME, manifest_columns(req.kind))
        atomic_write_text(build / "dataset.json", json.dumps({
            "kind": req.kind, "n": req.n, "seed": req.seed, "size": list(req.size), "frames": req.frames,
            "views": list(req.views) if req.kind == "echo" else None, "generator": "usgen dataset",
        }, indent=1) + "\n")
    return out


def _in_workers(jobs: list[dict], workers: int):
    """make_item over ``jobs`` in worker processes, rows in order. On any exception (SIGTERM and
    Ctrl-C included) the workers are killed at once: a plain shutdown would first finish every
    queued item."""
    ctx = get_context("fork") if hasattr(os, "fork") else get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))
    try:
        yield from pool.map(make_item, jobs, chunksize=1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in active_children():
            worker.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
