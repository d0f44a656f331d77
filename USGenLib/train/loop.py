"""The shared training loop every USGen job trains with.

A job (``TrainJob``) supplies its modules, optimisers, one batch per step, one optimisation step
and a validation; the loop adds what every job needs: resume from the last checkpoint (written
atomically), a JSON-lines log of losses and validation figures, a progress bar or
``--progress-json`` lines, and several processes under ``torchrun``.

Determinism: the job draws everything random for step ``s`` from generators seeded by
``(seed, s, rank)``, so a resumed run repeats an uninterrupted one: the state at a checkpoint is
only the step, the weights and the optimiser moments.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from USGenLib.errors import UsgenInputError
from USGenLib.progress import emit, progress
from USGenLib.train import distributed
from USGenLib.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from USGenLib.train.devices import describe_device
from USGenLib.train.distributed import Rank

LOG_NAME = "log.jsonl"
COMMANDS_NAME = "commands.txt"   # every invocation of a run, for its model card


class TrainJob(Protocol):
    def modules(self) -> dict[str, torch.nn.Module]: ...
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...
    def make_batch(self, step: int, rank: int) -> Any: ...
    def train_step(self, batch: Any, step: int) -> dict[str, float]: ...
    def validate(self, step: int) -> dict[str, float]: ...


@dataclass
class LoopSettings:
    steps: int
    seed: int = 0
    checkpoint_every: int = 200
    validate_every: int = 500
    log_every: int = 10
    workers: int = 0          # DataLoader processes preparing the next batches


class _StepBatches(Dataset):
    """Item ``s`` is the batch of step ``s``: the DataLoader prepares batches ahead, in order."""

    def __init__(self, job: TrainJob, rank: int):
        self.job, self.rank = job, rank

    def __getitem__(self, step: int):
        return self.job.make_batch(step, self.rank)

    def __len__(self) -> int:  # only the sampler's range matters
        return 1 << 62


def record_command(run_dir: str | Path, command: str, resume: bool) -> None:
    """Add ``command`` to RUN_DIR/commands.txt (started afresh unless the run is resumed)."""
    history = Path(run_dir) / COMMANDS_NAME
    history.write_text((history.read_text() if resume and history.exists() else "") + command + "\n")


def recorded_commands(run_dir: str | Path) -> str:
    """The run's invocations in order, as the model card's command line."""
    return " ; then ".join((Path(run_dir) / COMMANDS_NAME).read_text().splitlines())


def training_card(run_dir: str | Path, summary: dict[str, Any], *, title: str, data: str, seed: int, steps: int,
                  rank: Rank, device: torch.device, model: torch.nn.Module, figures: dict[str, float],
                  time_note: str = "") -> dict[str, Any]:
    """The model-card fields every training job records, in the card's order, for ``save_weights``'
    ``card``: ``title``; the run's recorded commands (RUN_DIR/commands.txt); ``data``, worded by the
    job; ``seed``; ``steps``; the processes of ``rank``'s group; the wall time, ``summary["seconds"]``
    of training (``summary`` is what ``run_loop`` returned) followed by ``time_note`` when given, e.g.
    "(+12 s reading the data)"; the machine of ``device``; ``model``'s parameter count; ``figures``
    (the final validation). A job adds its own fields to the dict it gets."""
    wall = f"{summary['seconds']:.0f} s of training" + (f" {time_note}" if time_note else "")
    return {"title": title, "command": recorded_commands(run_dir), "data": data, "seed": seed, "steps": steps,
            "processes": rank.world_size, "wall_time": wall, "machine": describe_device(device),
            "parameters": sum(p.numel() for p in model.parameters()), "figures": figures}


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuses to overwrite a run that was not asked to resume, and impossible run folders."""
    ckpt = run_dir / CHECKPOINT_NAME
    if ckpt.exists() and not resume:
        raise UsgenInputError(run_dir, "already holds a training run; pass --resume to continue it or choose "
                                       "another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsgenInputError(run_dir, "exists and is not a folder")
    if not run_dir.resolve().parent.is_dir():
        raise UsgenInputError(run_dir.parent, "output folder does not exist")


def _trim_log(log: Path, step: int) -> float:
    """Drop log lines past the checkpoint so the resumed log reads like an uninterrupted one; returns
    the training time logged up to the checkpoint (wall times add up over resumed runs)."""
    if not log.exists():
        return 0.0
    kept = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
    kept = [r for r in kept if r.get("step", 0) <= step]
    log.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return max((r["time_s"] for r in kept if "time_s" in r), default=0.0)


def run_loop(job: TrainJob, run_dir: str | Path, settings: LoopSettings, rank: Rank, device: torch.device,
             config: dict, resume: bool = False, on_start=None) -> dict[str, Any]:
    """Train ``job`` for ``settings.steps`` steps in ``run_dir``; returns a summary whose ``seconds``
    is the training time of all invocations of this run.

    Rank 0 writes the checkpoint and the log (and calls ``on_start`` once the run folder is ready);
    every rank computes its own batches.
    """
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, resume)
    if rank.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if on_start is not None:
            on_start()
    distributed.barrier(rank)
    ckpt, log = run_dir / CHECKPOINT_NAME, run_dir / LOG_NAME
    start, before = 0, 0.0
    if resume and ckpt.exists():
        start = load_checkpoint(ckpt, job.modules(), job.optimizers())
        if rank.is_main:
            before = _trim_log(log, start)
    elif rank.is_main and log.exists():
        log.unlink()
    if start >= settings.steps:
        return {"steps": start, "resumed_from": start, "seconds": before, "last": {}}

    loader = DataLoader(_StepBatches(job, rank.rank), batch_size=None, sampler=range(start, settings.steps),
                        num_workers=settings.workers, prefetch_factor=2 if settings.workers else None)
    t0 = time.perf_counter() - before
    last: dict[str, float] = {}
    window: list[dict[str, float]] = []
    with progress(settings.steps - start, "train", unit="step") as bar, open_log(log, rank) as write:
        for step, batch in zip(range(start, settings.steps), loader):
            window.append(job.train_step(batch, step))
            done = step + 1
            if done % settings.log_every == 0 or done == settings.steps:
                keys = sorted({k for w in window for k in w})  # a phase change may switch the losses
                means = {k: sum(w[k] for w in window if k in w) / sum(k in w for w in window) for k in keys}
                last = distributed.mean_over_ranks(means, rank, device)
                window = []
                write({"step": done, "time_s": round(time.perf_counter() - t0, 2), **last})
            if done % settings.validate_every == 0 or done == settings.steps:
                figures = distributed.mean_over_ranks(job.validate(done), rank, device)
                write({"step": done, "validation": figures})
                emit({"progress": round(done / settings.steps, 4), "stage": "validate", "step": done, **figures})
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                if rank.is_main:
                    save_checkpoint(ckpt, done, job.modules(), job.optimizers(), config)
                distributed.barrier(rank)
            bar.update(1, message=" ".join(f"{k} {v:.4f}" for k, v in last.items()))
    return {"steps": settings.steps, "resumed_from": start, "seconds": time.perf_counter() - t0, "last": last}


class open_log:
    """Append JSON lines to the run's log (rank 0 only; other ranks write nothing)."""

    def __init__(self, path: Path, rank: Rank):
        self.path, self.rank, self.fh = path, rank, None

    def __enter__(self):
        if self.rank.is_main:
            self.fh = open(self.path, "a", encoding="utf-8")
        return self.write

    def write(self, record: dict) -> None:
        if self.fh is not None:
            self.fh.write(json.dumps(record) + "\n")
            self.fh.flush()

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()
