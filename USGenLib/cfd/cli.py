"""``usgen cfd remove | train | eval`` and ``usgen bench cfd``: registered by cli.py."""

from __future__ import annotations

import json
from pathlib import Path

from USGenLib.arguments import add_train_arguments, command_line, int_in
from USGenLib.bench_target import bench_target
from USGenLib.train.devices import DEVICE_CHOICES


def add_commands(sub, common) -> None:
    p = sub.add_parser("cfd", parents=[common], help="colour-Doppler removal: remove, train, eval",
                       description="Colour-flow-Doppler (CFD) cine -> B-mode cine. See docs/cfd.md.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    rm = actions.add_parser("remove", parents=[common], help="remove the colour Doppler from a cine",
                            description="Writes OUT_DIR/bmode.seq.nrrd (same geometry and frame times as IN), "
                                        "OUT_DIR/cfd_mask.seq.nrrd (a label sequence) and OUT_DIR/report.json.")
    rm.add_argument("input", type=Path, help="colour cine: DICOM, video (.avi .mp4) or .seq.nrrd")
    rm.add_argument("out_dir", type=Path, help="output folder (created; files of a previous run there are replaced)")
    rm.add_argument("--weights", type=Path, help="weights (.safetensors); default: the bundled ones")
    rm.add_argument("--mask-weights", type=Path,
                    help="learned-mask weights; default: the bundled ones (without them: the colour rule alone)")
    rm.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when present")
    rm.add_argument("--keep-color-text", action="store_true",
                    help="keep colour outside the CFD mask (text, ECG, markers): the output is then RGB")
    rm.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0, help="speckle injected by the bridge (default 0)")
    rm.set_defaults(run=_run_remove)

    tr = actions.add_parser("train", parents=[common], help="train the CFD-removal networks",
                            description="Train on a `usgen dataset cfd` folder. Resumable (--resume), "
                                        "deterministic by --seed, multi-process under torchrun. Writes RUN_DIR/"
                                        "checkpoint.pt, log.jsonl and model.safetensors with its model card.")
    tr.add_argument("--data", type=Path, required=True, help="a `usgen dataset cfd` folder")
    tr.add_argument("--config", choices=["tiny", "default"], default="default")
    tr.add_argument("--network", choices=["remover", "mask"], default="remover",
                    help="remover: coarse + refinement networks; mask: the learned part of the CFD mask")
    add_train_arguments(tr, "total steps (default: the config's coarse + refinement steps)")
    tr.add_argument("--coarse-steps", type=int_in(0, 10**9), help="steps of the coarse phase (default: the config's)")
    tr.add_argument("--batch", type=int_in(1, 4096), help="clips per step and process (default: the config's)")
    tr.add_argument("--workers", type=int_in(0, 64), default=1, help="data-loading processes (default 1)")
    tr.set_defaults(run=_run_train)

    ev = actions.add_parser("eval", parents=[common], help="SSIM and PSNR on the test split, per coverage quartile",
                            description="Runs removal on every test clip of a `usgen dataset cfd` folder with the "
                                        "ground-truth and the detected mask; whole-frame and in-mask-box SSIM/PSNR "
                                        "per coverage quartile; the ablation of the pipeline stages; and the checks "
                                        "on pydicom's real power-Doppler files. Prints a table, writes --out JSON.")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--weights", type=Path)
    ev.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    ev.add_argument("--split", default="test")
    ev.add_argument("--max-items", type=int_in(1, 10**7), help="evaluate at most this many clips")
    ev.add_argument("--out", type=Path, default=Path("cfd_eval.json"),
                    help="the figures as JSON, per clip too (default cfd_eval.json)")
    ev.add_argument("--update-card", action="store_true",
                    help="add the figures to the weights' model card (<weights>.json and .md)")
    ev.set_defaults(run=_run_eval)


def add_bench(targets, common) -> None:
    with bench_target(targets, common, "cfd", "CFD removal frames/s at 256x256 and peak memory", "fps_256",
                      _bench) as b:
        b.add_argument("--frames", type=int_in(1, 2000), default=64,
                       help="frames of the synthetic 256x256 clip (default 64)")
        b.add_argument("--weights", type=Path)


def _run_remove(args) -> list[Path]:
    from USGenLib.cfd.remove import load_remover, remove_to_folder

    remover = load_remover(args.weights, args.device, mask_weights=args.mask_weights)
    return remove_to_folder(args.input, args.out_dir, remover, keep_color_text=args.keep_color_text,
                            seed=args.seed)


def _run_train(args) -> list[Path]:
    from USGenLib.cfd.train import train_cfd

    return train_cfd(args, command_line())


def _run_eval(args) -> list[Path]:
    from USGenLib.cfd.evaluate import evaluate, format_eval

    result = evaluate(args.data, weights=args.weights, device=args.device, split=args.split,
                      max_items=args.max_items)
    print(format_eval(result))
    outputs = []
    if args.update_card:
        from USGenLib.cfd.evaluate import card_tables
        from USGenLib.cfd.remove import load_remover
        from USGenLib.train.weights import update_card

        outputs.append(update_card(load_remover(args.weights, "cpu").weights, **card_tables(result, command_line())))
    from USGenLib.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return outputs + [args.out]


def _bench(args):
    from USGenLib.cfd.bench import bench_cfd, format_bench_cfd

    return bench_cfd(frames=args.frames, weights=args.weights), format_bench_cfd
