"""``usgen enhance [run] IN OUT_DIR | train | eval`` and ``usgen bench enhance``: registered by cli.py."""

from __future__ import annotations

import json
from pathlib import Path

from USGenLib.arguments import add_train_arguments, command_line, int_in
from USGenLib.bench_target import bench_target
from USGenLib.enhance.networks import VARIANTS
from USGenLib.train.devices import DEVICE_CHOICES

ACTIONS = ("run", "train", "eval")


def default_action(argv: list[str]) -> list[str]:
    """``usgen enhance IN OUT_DIR`` is ``usgen enhance run IN OUT_DIR``: insert the action when the word
    after ``enhance`` is a path rather than an action or an option."""
    if "enhance" in argv:
        i = argv.index("enhance")
        if (i == 0 or argv[i - 1] != "bench") and i + 1 < len(argv) and argv[i + 1] not in ACTIONS \
                and not argv[i + 1].startswith("-"):
            return argv[:i + 1] + ["run"] + argv[i + 1:]
    return argv


def add_run_arguments(p, with_input: bool = True) -> None:
    if with_input:
        p.add_argument("input", type=Path, help="a `usgen simulate` output folder, a `usgen dataset enhance` item, "
                                                "or a low-quality .seq.nrrd with its maps beside it")
        p.add_argument("out_dir", type=Path, help="output folder (created; files of a previous run there are replaced)")
    p.add_argument("--weights", type=Path, help="generator weights (.safetensors); default: the bundled MSA ones")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when present")
    if with_input:
        p.add_argument("--labels", type=Path, help="label sequence (default: labels.seq.nrrd beside the input)")
        p.add_argument("--attenuation", type=Path,
                       help="attenuation sequence (default: attenuation.seq.nrrd beside the input)")
        p.add_argument("--fov-mask", type=Path, help="FoV mask (default: fov_mask.nrrd beside the input)")
        p.add_argument("--variant", choices=VARIANTS, help="refuse weights of any other input variant")


def add_commands(sub, common) -> None:
    p = sub.add_parser("enhance", parents=[common], help="sim-to-real enhancement: run, train, eval",
                       description="Low-quality simulation -> high-quality (or real) appearance with pix2pix. "
                                   "`usgen enhance IN OUT_DIR` is short for `usgen enhance run IN OUT_DIR`. "
                                   "See docs/enhance.md.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    run = actions.add_parser("run", parents=[common], help="enhance a simulation (also: usgen enhance IN OUT_DIR)",
                             description="Writes OUT_DIR/enhanced.seq.nrrd (same geometry and frame times as the "
                                         "simulation, black outside its FoV) and OUT_DIR/report.json.")
    add_run_arguments(run)
    run.set_defaults(run=_run_enhance)

    tr = actions.add_parser("train", parents=[common], help="train the enhancement networks",
                            description="Train on a `usgen dataset enhance` folder: the paired pix2pix generator "
                                        "(low -> high quality) of one input variant; with --unpaired-real, a "
                                        "translation toward a folder of real B-mode scans; or the anatomy network "
                                        "(--network anatomy) that the evaluation and the unpaired mode use. "
                                        "Resumable, deterministic by --seed, multi-process under torchrun.")
    tr.add_argument("--data", type=Path, required=True, help="a `usgen dataset enhance` folder")
    tr.add_argument("--variant", choices=VARIANTS, default="MSA",
                    help="generator inputs: M = image + FoV mask, MS = + segmentation, MSA = + attenuation")
    tr.add_argument("--config", choices=["tiny", "default"], default="default")
    tr.add_argument("--network", choices=["generator", "anatomy"], default="generator")
    tr.add_argument("--unpaired-real", type=Path, metavar="FOLDER",
                    help="real B-mode cines or frames (DICOM, video, .seq.nrrd, PNG): learn simulation -> real "
                         "without pairs (PatchNCE + GAN + anatomy consistency)")
    tr.add_argument("--anatomy-weights", type=Path,
                    help="anatomy network for --unpaired-real's consistency loss (default: the bundled one)")
    add_train_arguments(tr, "total steps (default: the config's)")
    tr.add_argument("--batch", type=int_in(1, 4096), help="crops per step and process (default: the config's)")
    tr.add_argument("--max-items", type=int_in(1, 10**7), help="read at most this many sweeps per split")
    tr.set_defaults(run=_run_train)

    ev = actions.add_parser("eval", parents=[common], help="PSNR, SSIM, patch-KL, Frechet distance per variant",
                            description="On the test split of a `usgen dataset enhance` folder: low quality and "
                                        "each variant against the high-quality target (PSNR, SSIM, patch-KL, "
                                        "Frechet distance on the anatomy network's features; mean, std, 5th and "
                                        "95th percentile), Wilcoxon signed-rank p-values between variants, and "
                                        "the same on a CT the networks never saw. Prints a table, writes --out.")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--weights", type=Path, nargs="+", metavar="W",
                    help="generator weights to compare (default: the bundled M, MS and MSA)")
    ev.add_argument("--anatomy-weights", type=Path, help="features for the Frechet distance (default: bundled)")
    ev.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    ev.add_argument("--split", default="test")
    ev.add_argument("--max-items", type=int_in(1, 10**7), help="evaluate at most this many sweeps")
    ev.add_argument("--no-ct", action="store_true", help="skip the unseen-CT check")
    ev.add_argument("--out", type=Path, default=Path("enhance_eval.json"), help="figures as JSON (default enhance_eval.json)")
    ev.add_argument("--update-card", action="store_true",
                    help="write the table into the model card of every evaluated weights file")
    ev.set_defaults(run=_run_eval)


def add_bench(targets, common) -> None:
    with bench_target(targets, common, "enhance",
                      "low-quality simulation + enhancement vs high-quality simulation, ms/frame", "speedup_256",
                      _bench) as b:
        b.add_argument("--frames", type=int_in(2, 1000), default=16, help="frames timed per size (default 16)")
        b.add_argument("--weights", type=Path)



def _run_enhance(args) -> list[Path]:
    from USGenLib.enhance.apply import enhance_to_folder, load_enhancer

    enhancer = load_enhancer(args.weights, args.device, variant=args.variant)
    return enhance_to_folder(args.input, args.out_dir, enhancer, args.labels, args.attenuation, args.fov_mask)


def _run_train(args) -> list[Path]:
    from USGenLib.enhance.train import train_enhance

    return train_enhance(args, command_line())


def _run_eval(args) -> list[Path]:
    from USGenLib.enhance.evaluate import card_tables, evaluate, format_eval
    from USGenLib.io import atomic_write_text

    result = evaluate(args.data, weights=args.weights, anatomy_weights=args.anatomy_weights, device=args.device,
                      split=args.split, max_items=args.max_items, unseen_ct=not args.no_ct)
    print(format_eval(result))
    outputs = []
    if args.update_card:
        from USGenLib.train.weights import update_card

        for path in result["weights"].values():
            outputs.append(update_card(path, **card_tables(result, command_line())))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return outputs + [args.out]


def _bench(args):
    from USGenLib.enhance.bench import bench_enhance, format_bench_enhance

    return bench_enhance(frames=args.frames, weights=args.weights), format_bench_enhance
