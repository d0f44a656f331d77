"""``usgen enhance train``: the paired, unpaired or anatomy job (jobs.py, unpaired.py) through the
shared loop, exported with its model card."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from USGenLib.enhance.jobs import AnatomyJob, PairedJob
from USGenLib.enhance.networks import EnhanceConfig, config_for
from USGenLib.enhance.unpaired import UnpairedJob
from USGenLib.errors import UsgenInputError
from USGenLib.train import distributed
from USGenLib.train.loop import LoopSettings, record_command, run_loop, training_card
from USGenLib.train.weights import save_weights


def _check_resume(run_dir: Path, resume: bool, config: EnhanceConfig, job_class) -> None:
    """A resumed run must be the same network, variant and config as the checkpoint (one-line error)."""
    from USGenLib.train.checkpoint import CHECKPOINT_NAME, checkpoint_config

    ckpt = run_dir / CHECKPOINT_NAME
    if not (resume and ckpt.is_file()):
        return
    saved = checkpoint_config(ckpt)
    mode = getattr(job_class, "mode", "paired")

    def describe(mode: str, variant, name) -> str:
        return f"{mode} network ({name})" if mode == "anatomy" else f"variant {variant} {mode} generator ({name})"

    asked = describe(mode, config.variant, config.name)
    held = describe(saved.get("mode", "?"), saved.get("variant"), saved.get("name"))
    if asked != held:
        raise UsgenInputError(ckpt, f"holds a {held} run; --resume asked for a {asked}")


def train_enhance(args, command: str) -> list[Path]:
    """Run ``usgen enhance train`` and export RUN_DIR/model.safetensors with its model card."""
    config = config_for(args.config, args.variant)
    if args.batch is not None:
        config = replace(config, batch=args.batch)
    if args.network == "anatomy":
        job_class, steps = AnatomyJob, config.seg_steps
    elif args.unpaired_real is not None:
        job_class, steps = UnpairedJob, config.unpaired_steps
    else:
        job_class, steps = PairedJob, config.steps
    steps = args.steps if args.steps is not None else steps
    _check_resume(Path(args.out), args.resume, config, job_class)
    with distributed.session(args.device) as (rank, device):
        t0 = time.perf_counter()
        if job_class is UnpairedJob:
            job = UnpairedJob(str(args.data), config, args.seed, device, rank, args.unpaired_real,
                              args.anatomy_weights, args.max_items)
        else:
            job = job_class(str(args.data), config, args.seed, device, rank, args.max_items)
        load_s = time.perf_counter() - t0
        settings = LoopSettings(steps=steps, seed=args.seed, checkpoint_every=args.checkpoint_every,
                                validate_every=args.validate_every, workers=0)
        record = {**config.to_dict(), "mode": getattr(job, "mode", "paired")}
        summary = run_loop(job, args.out, settings, rank, device, record, resume=args.resume,
                           on_start=lambda: record_command(args.out, command, args.resume))
        if not rank.is_main:
            return []
        figures = job.validate(steps)
        if isinstance(job, UnpairedJob):
            figures.update(job.domain_figures(steps=300 if config.name == "default" else 20))
        title = {"enhance_anatomy": "Enhancement anatomy network (segmenter on simulations)"}.get(
            job.network, f"Sim-to-real enhancement, variant {config.variant}, {record['mode']} ({config.name})")
        card = training_card(
            args.out, summary, title=title,
            data=f"{args.data} ({len(job.train_set)} training frames of "
                 f"{len(set(job.train_set.item.tolist()))} simulated sweeps){job.data_note()}",
            seed=args.seed, steps=steps, rank=rank, device=device, model=job.model, figures=figures,
            time_note=f"(+{load_s:.0f} s reading the data)")
        out = save_weights(Path(args.out) / "model.safetensors", job.network, job.model.state_dict(), record, card)
        return [out]
