"""``usgen echo generate | train | eval`` and ``usgen bench echo``: registered by cli.py."""

from __future__ import annotations

import json
from pathlib import Path

from USGenLib.arguments import add_train_arguments, command_line, finite, int_in
from USGenLib.bench_target import bench_target
from USGenLib.echo.config import STAGES, VIEWS
from USGenLib.train.devices import DEVICE_CHOICES


def add_commands(sub, common) -> None:
    p = sub.add_parser("echo", parents=[common], help="synthetic echocardiograms: generate, train, eval",
                       description="View + EF -> labelled synthetic echo clips (A-VAE, latent flow matching, "
                                   "ReId privacy filter, LV segmenter, EF regressor). See docs/echo.md.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    g = actions.add_parser("generate", parents=[common], help="generate labelled echo clips",
                           description="Writes OUT/<id>/cine.seq.nrrd, OUT/<id>/lv.seq.nrrd (label sequence), "
                                       "OUT/<id>/report.json (requested, regressed and mask EF, ED/ES frames, ReId), "
                                       "OUT/manifest.csv and OUT/echonet/ (EchoNet-Dynamic layout).")
    g.add_argument("--view", choices=VIEWS + ("all",), required=True,
                   help="A4C, PSAX or PLAX; all: the three in turn (a data set)")
    efs = g.add_mutually_exclusive_group(required=True)
    efs.add_argument("--ef", type=finite(5, 95), help="ejection fraction in percent, 5..95")
    efs.add_argument("--ef-range", type=finite(5, 95), nargs=2, metavar=("LOW", "HIGH"),
                     help="EFs spread evenly from LOW to HIGH over the --n clips (a data set), 5..95")
    g.add_argument("--n", type=int_in(1, 10000), default=4, help="clips (default 4)")
    g.add_argument("--frames", type=int_in(8, 128), default=32, help="frames per clip, 8..128 (default 32, as trained)")
    g.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0, help="same seed, same clips (default 0)")
    g.add_argument("--steps", type=int_in(1, 1000), help="Euler steps (default: the weights' config, 8)")
    g.add_argument("--guidance", type=finite(0, 20), help="classifier-free guidance (default: the weights' config, "
                                                          "2; 1 = conditional only, 0 = unconditional)")
    g.add_argument("--candidates", type=int_in(1, 64),
                   help="videos drawn at most per clip until one's LV masks show the EF asked (default: the "
                        "weights' config, 4; 1 = keep the first)")
    g.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when present")
    g.add_argument("--weights-dir", type=Path, help="folder of <stage>.safetensors (default: the bundled weights)")
    g.add_argument("--out", type=Path, required=True, help="output folder (its clips appear at once)")
    g.set_defaults(run=_run_generate)

    t = actions.add_parser("train", parents=[common], help="train one echo network, or all in order",
                           description="Train on a `usgen dataset echo` folder. One stage writes RUN_DIR/<stage>."
                                       "safetensors with its model card (checkpoint and log in RUN_DIR); `all` runs "
                                       f"{', '.join(STAGES)} with each stage's run in RUN_DIR/<stage>/ and every "
                                       "weights file in RUN_DIR, which --weights-dir then takes. Resumable, "
                                       "deterministic by --seed, multi-process under torchrun.")
    t.add_argument("stage", choices=STAGES + ("all",))
    t.add_argument("--data", type=Path, required=True, help="a `usgen dataset echo` folder")
    t.add_argument("--config", choices=["tiny", "default"], default="default")
    add_train_arguments(t, "steps of each stage (default: the config's)", validate_every=None)
    t.add_argument("--weights-dir", type=Path,
                   help="where lifm, reid and lvfm find the A-VAE, and lvfm the segmenter its EF calibration "
                        "uses (default: the bundled ones; `all`: RUN_DIR)")
    t.set_defaults(run=_run_train)

    e = actions.add_parser("eval", parents=[common], help="A-VAE, realism, adherence, downstream EF and privacy figures",
                           description="On the val/test splits of a `usgen dataset echo` folder: A-VAE SSIM/PSNR, "
                                       "Frechet distances of frames and videos on the EF regressor's features, LV-mask "
                                       "Dice and EF adherence of generated clips, EF regression trained on synthetic "
                                       "clips vs the training split (scored on test), and the ReId rejection rates.")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--weights-dir", type=Path, help="default: the bundled weights")
    e.add_argument("--n", type=int_in(3, 100000), default=60, help="generated clips for the figures (default 60)")
    e.add_argument("--downstream-steps", type=int_in(1, 10**6),
                   help="training steps of each downstream EF regressor (default: the config's ef_steps)")
    e.add_argument("--steps", type=int_in(1, 1000), help="Euler steps (default: the weights' config)")
    e.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    e.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    e.add_argument("--out", type=Path, default=Path("echo_eval.json"), help="the figures as JSON (default echo_eval.json)")
    e.add_argument("--update-card", action="store_true", help="add the figures to the LVFM weights' model card")
    e.set_defaults(run=_run_eval)


def add_bench(targets, common) -> None:
    with bench_target(targets, common, "echo", "seconds per generated 32-frame 112x112 echo clip",
                      "seconds_per_clip", _bench) as b:
        b.add_argument("--weights-dir", type=Path)
        b.add_argument("--clips", type=int_in(1, 100), default=3, help="clips timed per device (default 3)")


def _run_generate(args) -> list[Path]:
    from USGenLib.echo.generate import generate_to_folder
    from USGenLib.echo.models import load_models
    from USGenLib.io import check_output_folder
    from USGenLib.train.devices import resolve_device

    check_output_folder(args.out)  # before the networks load
    models = load_models(args.weights_dir, resolve_device(args.device))
    steps = args.steps or models.config.sample_steps
    guidance = models.config.guidance if args.guidance is None else args.guidance
    ef = args.ef if args.ef_range is None else tuple(args.ef_range)
    return generate_to_folder(models, args.out, args.view, ef, args.n, args.frames, args.seed, steps, guidance,
                              args.candidates)


def _run_train(args) -> list[Path]:
    from USGenLib.echo.train import train_echo

    return train_echo(args, command_line())


def _run_eval(args) -> list[Path]:
    from USGenLib.echo.evaluate import evaluate, format_eval
    from USGenLib.io import atomic_write_text

    result = evaluate(args.data, weights_dir=args.weights_dir, n=args.n, downstream_steps=args.downstream_steps,
                      steps=args.steps, seed=args.seed, device=args.device)
    print(format_eval(result))
    outputs = []
    if args.update_card:
        from USGenLib.echo.evaluate import card_fields
        from USGenLib.echo.models import default_weights_dir
        from USGenLib.train.weights import update_card

        folder = args.weights_dir or default_weights_dir()
        outputs.append(update_card(folder / "lvfm.safetensors", **card_fields(result, command_line())))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return outputs + [args.out]


def _bench(args):
    from USGenLib.echo.bench import bench_echo, format_bench_echo

    return bench_echo(weights_dir=args.weights_dir, clips=args.clips), format_bench_echo
