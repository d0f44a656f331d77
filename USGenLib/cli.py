"""The `usgen` command: the one entry point to every USGen job.

Every sub-command takes --progress-json (one JSON object per line on stdout, for the Slicer
module) and --quiet. Bad input prints one line ``usgen: error: <file>: <problem>`` on stderr
(and ``{"error": ...}`` in JSON mode) and exits with code 2; nothing half-written is left.
SIGTERM and SIGHUP stop a job as Ctrl-C does, through its cleanup, with exit code 128 + signal.
A successful job in JSON mode ends with ``{"progress": 1.0, "stage": "done", "outputs": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

from USGenLib import __version__, limits, progress
from USGenLib.arguments import finite, int_in
from USGenLib.cfd.cli import add_bench as add_cfd_bench  # job packages register their own commands
from USGenLib.cfd.cli import add_commands as add_cfd_commands
from USGenLib.enhance.cli import add_bench as add_enhance_bench
from USGenLib.enhance.cli import add_commands as add_enhance_commands
from USGenLib.enhance.cli import default_action as enhance_default_action
from USGenLib.echo.cli import add_bench as add_echo_bench, add_commands as add_echo_commands
from USGenLib.errors import UsgenInputError
from USGenLib.lifetime import JobInterrupted, stop_signals_raise
from USGenLib.train.devices import DEVICE_CHOICES

MAX_SEED = 2 ** 32 - 1  # numpy and torch seeds; a 23-digit seed overflowed them


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the CLI's promise for bad input), not a usage block."""

    def error(self, message: str):
        raise UsgenInputError(None, f"{message} (see {self.prog} --help)")


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    out = common.add_argument_group("output control")
    out.add_argument("--progress-json", action="store_true",
                     help="print progress as one JSON object per line on stdout (for the Slicer module)")
    out.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    out.add_argument("--max-memory", default="8G", metavar="SIZE",
                     help="memory budget, e.g. 8G or 512M (default 8G): inputs and jobs that would need more "
                          "are refused before anything is allocated")
    return common


def parse_size(text: str, lo: int, hi: int) -> tuple[int, int]:
    """--size "HxW" -> (H, W), both in lo..hi pixels, else a one-line UsgenInputError."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UsgenInputError(None, f"--size must look like HxW, e.g. 256x256, got '{text}'") from None
    if not (lo <= h <= hi and lo <= w <= hi):
        raise UsgenInputError(None, f"--size {h}x{w}: height and width must be between {lo} and {hi} pixels")
    return h, w


def warn(message: str) -> None:
    """A warning: one line on stderr in every mode (JSON mode keeps stdout for the protocol)."""
    print(f"usgen: warning: {message}", file=sys.stderr)


def _done(outputs: list[Path], args) -> None:
    progress.emit({"progress": 1.0, "stage": "done", "outputs": [str(Path(p).resolve()) for p in outputs]})
    if progress.mode() == "bar":
        for p in outputs:
            print(p)


# ----------------------------------------------------------------------------- info
def _add_info(sub, common) -> None:
    p = sub.add_parser("info", parents=[common], help="describe a cine or volume file",
                       description="Frames, size, channels, spacing, frame rate and colour-flow presence of a "
                                   "DICOM, video, NRRD or volume file.")
    p.add_argument("file", type=Path, help="DICOM file, DICOM series folder, video, .seq.nrrd, .nrrd, .nii(.gz), .mha")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_info)


def _run_info(args) -> list[Path]:
    from USGenLib.info import describe, format_info

    info = describe(args.file)
    print(json.dumps(info) if args.json else format_info(info))
    return []


# -------------------------------------------------------------------------- convert
def _add_convert(sub, common) -> None:
    p = sub.add_parser("convert", parents=[common], help="convert between file formats",
                       description="Convert a cine (DICOM, video, .seq.nrrd, PLUS .igs.mha; a tracked cine's "
                                   "transforms also go to OUT's name.transforms.seq.mha) or volume (DICOM series folder, NIfTI, "
                                   "NRRD, MHA) to the format OUT's ending names: .seq.nrrd .nrrd .dcm .avi .mp4 .gif "
                                   ".png (contact sheet) for cines; .nrrd .nii.gz .mha .seg.nrrd for volumes.")
    p.add_argument("input", type=Path, help="input file or DICOM series folder")
    p.add_argument("output", type=Path, help="output file; its ending chooses the format")
    p.add_argument("--deidentify", action="store_true",
                   help="DICOM output: drop patient and study identifiers and dates, new UIDs; warns when the "
                        "pixels may hold burned-in text (see --blackout-text)")
    p.add_argument("--blackout-text", action="store_true",
                   help="cines: black out every pixel outside the ultrasound image (burned-in names, dates, IDs; "
                        "the image is found from its pixels, within SequenceOfUltrasoundRegions where given); "
                        "text drawn inside the image is kept")
    _add_allow_partial(p)
    p.set_defaults(run=_run_convert)


def _add_allow_partial(p) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="keep the readable frames of a truncated or damaged video or DICOM (else it is refused)")


def _run_convert(args) -> list[Path]:
    from USGenLib.io import check_output_folder, read_any, write_any, write_tracked_cine
    from USGenLib.io.dicom import burned_in_annotation
    from USGenLib.text_blackout import blackout_text
    from USGenLib.limits import check_output_name
    from USGenLib.types import Cine

    check_output_name(args.output)
    check_output_folder(args.output)  # fail before reading a large input
    # lazy: frames are decoded as the writer asks for them, so a long clip streams
    data = read_any(args.input, lazy=True, allow_partial=args.allow_partial)
    if not isinstance(data, Cine):
        if args.blackout_text:
            raise UsgenInputError(args.input, "--blackout-text applies to cines, and this is a volume")
        return [write_any(data, args.output, deidentify=args.deidentify)]
    if args.blackout_text:
        data = blackout_text(data)
    elif args.deidentify and burned_in_annotation(data.meta) == "YES":
        said = "says BurnedInAnnotation YES" if data.meta.get("burned_in_annotation") else "does not say it has none"
        warn(f"{args.input}: pixels may hold burned-in text (the source {said}); --blackout-text blacks out "
             "everything outside the ultrasound image")
    return write_tracked_cine(data, args.output, deidentify=args.deidentify)


# -------------------------------------------------------------------- contact sheet
def _add_sheet(sub, common) -> None:
    p = sub.add_parser("sheet", parents=[common], help="PNG contact sheet of one or more cines",
                       description="One row per cine, evenly spaced frames with their times, tiles scaled to the "
                                   "physical aspect ratio: compare cines side by side.")
    p.add_argument("inputs", type=Path, nargs="+", help="cines (DICOM, video, .seq.nrrd)")
    p.add_argument("--out", type=Path, required=True, help="output .png")
    p.add_argument("--frames", type=int_in(1, 64), default=6, help="frames per row, 1..64 (default 6)")
    p.add_argument("--height", type=int_in(8, 2048), default=160, help="tile height in pixels, 8..2048 (default 160)")
    _add_allow_partial(p)
    p.set_defaults(run=_run_sheet)


def _run_sheet(args) -> list[Path]:
    from USGenLib.io import check_output_folder, read_cine, suffix_of, write_contact_sheet

    if suffix_of(args.out) != ".png":
        raise UsgenInputError(args.out, "a contact sheet is a .png file")
    check_output_folder(args.out)
    cines = [read_cine(p, lazy=True, allow_partial=args.allow_partial) for p in args.inputs]
    labels = [p.name.split(".")[0] for p in args.inputs] if len(cines) > 1 else None
    return [write_contact_sheet(cines, args.out, frames_per_row=args.frames, tile_height=args.height, labels=labels)]


# ------------------------------------------------------------------------- simulate
def _add_simulate(sub, common) -> None:
    p = sub.add_parser("simulate", parents=[common], help="simulate B-mode, labels, attenuation and FoV from a CT or phantom",
                       description="Ray-marching ultrasound simulation of a CT (HU), a label map (tissue table) or a "
                                   "generated phantom. Writes OUT/bmode.seq.nrrd, labels.seq.nrrd, "
                                   "attenuation.seq.nrrd, fov_mask.nrrd and meta.json. See docs/simulation.md.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ct", type=Path, help="CT volume (HU) or label map: DICOM series folder, .nrrd, .nii.gz, .mha")
    src.add_argument("--phantom", help="generated phantom: abdomen or fetal")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                   help="phantom shapes, scatterer texture and ray jitter (default 0)")
    p.add_argument("--probe", choices=["convex", "linear"], default="convex")
    p.add_argument("--quality", choices=["low", "high"], default=None,
                   help="low (default): 1 ray per scanline, 1 elevational layer; high: 32 rays, 3 layers")
    p.add_argument("--rays", type=int_in(1, 1024), help="rays per scanline, 1..1024 (overrides --quality's)")
    p.add_argument("--layers", type=int_in(1, 64), help="elevational layers, 1..64 (overrides --quality's)")
    p.add_argument("--pose", type=Path, help="probe pose(s): JSON, text 4x4, or a Slicer/ITK .tfm (LPS; see docs)")
    p.add_argument("--sweep", type=int_in(1, 100_000), default=1, help="frames of a sweep through the pose (default 1)")
    p.add_argument("--sweep-mm", type=finite(-10_000, 10_000), default=None,
                   help="sweep translation along the elevation axis, mm (default: 40 or less to stay in the volume)")
    p.add_argument("--tilt", type=finite(-360, 360), default=0.0, help="sweep fan tilt span, degrees (default 0)")
    p.add_argument("--rotate", type=finite(-360, 360), default=0.0,
                   help="sweep rotation span about the probe axis, degrees")
    p.add_argument("--size", default="256x256", help="output frame size HxW (default 256x256)")
    p.add_argument("--hu-offset", default="auto",
                   help="subtracted from CT values to get HU: auto (detects HU+1000 data) or a number")
    p.add_argument("--enhance", action="store_true",
                   help="also run the enhancer on the low-quality simulation: adds OUT/enhanced.seq.nrrd")
    p.add_argument("--enhance-weights", type=Path, help="enhancer weights (default: the bundled MSA ones)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="simulator and enhancer (auto: CUDA when present)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args) -> list[Path]:
    from USGenLib.io import check_output_folder, read_volume
    from USGenLib.limits import check_output_name, probe_writable, require_memory
    from USGenLib.simulation import Simulator, make_phantom, read_poses, sweep_poses
    from USGenLib.simulation.sweep import extent_along
    from USGenLib.train.devices import resolve_device

    if args.out.exists() and not args.out.is_dir():
        raise UsgenInputError(args.out, "exists and is not a folder")
    # Before simulating: the folder that will hold OUT must exist as written (a/missing/../b does
    # not, whatever resolve() says) and take new entries (even for root on a read-only mount).
    check_output_name(args.out)
    parent = check_output_folder(args.out)
    probe_writable(args.out if args.out.is_dir() else parent)
    size = parse_size(args.size, 16, 4096)
    if args.enhance and (args.quality == "high" or args.rays or args.layers):
        raise UsgenInputError(None, "--enhance enhances the fast low-quality simulation: drop --quality high, "
                                    "--rays and --layers")
    enhancer = None
    if args.enhance:  # load (and check) the weights before the simulation's work
        from USGenLib.enhance.apply import load_enhancer

        enhancer = load_enhancer(args.enhance_weights, args.device)
    try:
        hu_offset = args.hu_offset if args.hu_offset == "auto" else float(args.hu_offset)
    except ValueError:
        raise UsgenInputError(None, f"--hu-offset must be 'auto' or a number, got '{args.hu_offset}'") from None
    if hu_offset != "auto" and not -10_000 <= hu_offset <= 10_000:
        raise UsgenInputError(None, f"--hu-offset must be a number in -10000..10000, got '{args.hu_offset}'")
    # B-mode and labels (1 byte) and attenuation (4 bytes) per pixel and frame, held until written
    require_memory(None, args.sweep * size[0] * size[1] * 6, f"a sweep of {args.sweep} frames of {size[0]}x{size[1]}")
    volume = read_volume(args.ct) if args.ct else make_phantom(args.phantom, seed=args.seed)
    sim = Simulator(volume, args.probe, args.quality or "low", size=size, seed=args.seed, rays=args.rays, layers=args.layers,
                    device=resolve_device(args.device),
                    hu_offset=hu_offset, source=str(args.ct) if args.ct else None)
    poses = read_poses(args.pose) if args.pose else sim.default_pose()[None]
    require_memory(args.pose, poses.shape[0] * size[0] * size[1] * 6, f"{poses.shape[0]} frames of {size[0]}x{size[1]}")
    if args.sweep > 1:
        if poses.shape[0] > 1:
            raise UsgenInputError(args.pose, "holds several poses already; give one pose with --sweep")
        span = args.sweep_mm
        if span is None:  # 40 mm, or 60 % of the volume's extent across the imaging plane
            span = min(40.0, 0.6 * extent_along(volume.index_to_physical(), volume.shape_ijk, poses[0][:3, 2]))
        poses = sweep_poses(poses[0], args.sweep, span_mm=span, tilt_deg=args.tilt, rotate_deg=args.rotate)
    result = sim.simulate(poses, pose_source=args.pose)
    extra = {}
    if enhancer is not None:
        from USGenLib.enhance.apply import enhance_simulation
        from USGenLib.enhance.inputs import Simulation

        enhanced, report = enhance_simulation(Simulation(result.bmode, result.labels.frames, result.attenuation.frames,
                                                         result.fov_mask.array.reshape(size) > 0, args.out), enhancer)
        report.pop("input")
        result.meta["enhance"] = report
        extra["enhanced.seq.nrrd"] = enhanced
    return result.write(args.out, extra)


# ----------------------------------------------------------------------------- demo
def _add_demo(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="run the main job on bundled data",
                       description="Convert the real ultrasound DICOMs bundled with pydicom to Slicer sequences with "
                                   "previews, add a simulated sweep, and write OUT_DIR/index.html.")
    p.add_argument("out_dir", type=Path, help="output folder (created)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> list[Path]:
    from USGenLib.demo import run_demo

    return run_demo(args.out_dir)


# -------------------------------------------------------------------------- dataset
def _add_dataset(sub, common) -> None:
    p = sub.add_parser("dataset", parents=[common], help="generate paired training data (cfd, echo, enhance)",
                       description="Generate a synthetic paired data set: cfd (colour-Doppler cine, ground-truth "
                                   "B-mode, CFD mask), echo (beating-heart phantom cine, LV masks, EF; also in "
                                   "EchoNet-Dynamic layout under OUT/echonet) or enhance (low/high-quality simulation "
                                   "pairs with labels, attenuation and FoV mask). Writes one folder per item and "
                                   "OUT/manifest.csv. Deterministic by --seed; docs/datasets.md describes the layouts.")
    p.add_argument("kind", choices=["cfd", "echo", "enhance"], help="which data set")
    p.add_argument("--n", type=int, required=True, help="number of items (at most 100000)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", default=None, help="frame size HxW (default 256x256; echo 112x112)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default cfd 16, echo 32, enhance 8)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--views", default="A4C,PSAX,PLAX", help="echo views, comma-separated (default A4C,PSAX,PLAX)")
    p.set_defaults(run=_run_dataset)


def _run_dataset(args) -> list[Path]:
    from USGenLib.datasets.generate import MAX_SIDE, MIN_SIDE, DatasetRequest, generate_dataset

    size = parse_size(args.size, MIN_SIDE, MAX_SIDE) if args.size else None
    views = tuple(v.strip() for v in args.views.split(",") if v.strip())
    req = DatasetRequest(args.kind, args.n, args.out, seed=args.seed, size=size, frames=args.frames,
                         workers=args.workers, views=views)
    out = generate_dataset(req)
    return [out / "manifest.csv"]


def _run_bench_dataset(args) -> list[Path]:
    from USGenLib.datasets.bench import bench_dataset, format_bench_dataset
    from USGenLib.datasets.generate import MAX_SIDE, MIN_SIDE

    result = bench_dataset(args.kind, n=args.n, workers=args.workers,
                           size=parse_size(args.size, MIN_SIDE, MAX_SIDE) if args.size else None, frames=args.frames)
    print(json.dumps(result) if args.json else format_bench_dataset(result))
    return []


# ---------------------------------------------------------------------------- bench
def _add_bench(sub, common) -> None:
    p = sub.add_parser("bench", parents=[common], help="measure speed and memory",
                       description="Benchmarks that print figures (docs/benchmarks.md records them).")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    io = targets.add_parser("io", parents=[common], help="convert a 300-frame 640x480 RGB cine to .seq.nrrd")
    io.add_argument("--frames", type=int, default=300)
    io.add_argument("--json", action="store_true", help="print one JSON object")
    io.set_defaults(run=_run_bench_io)
    sim = targets.add_parser("simulate", parents=[common], help="simulation frames/s at 256x256 and 512x512 from a 256^3 volume")
    sim.add_argument("--volume", type=int, default=256, help="phantom size in voxels per side (default 256)")
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.set_defaults(run=_run_bench_simulate)
    ds = targets.add_parser("dataset", parents=[common], help="generation rate of `usgen dataset` (default: 200 CFD "
                                                                 "clips of 16 frames at 256x256, 2 workers)")
    ds.add_argument("--kind", choices=["cfd", "echo", "enhance"], default="cfd")
    ds.add_argument("--n", type=int, default=200, help="items to generate (into a temporary folder)")
    ds.add_argument("--workers", type=int, default=2)
    ds.add_argument("--size", default=None, help="HxW (default per kind)")
    ds.add_argument("--frames", type=int, default=None)
    ds.add_argument("--json", action="store_true", help="print one JSON object")
    ds.set_defaults(run=_run_bench_dataset)
    add_cfd_bench(targets, common)
    add_enhance_bench(targets, common)
    add_echo_bench(targets, common)


def _run_bench_simulate(args) -> list[Path]:
    from USGenLib.simulation.bench import bench_simulate, format_bench_simulate

    result = bench_simulate(volume_size=args.volume)
    print(json.dumps(result) if args.json else format_bench_simulate(result))
    return []


def _run_bench_io(args) -> list[Path]:
    from USGenLib.io.bench import bench_io, format_bench_io

    result = bench_io(frames=args.frames)
    print(json.dumps(result) if args.json else format_bench_io(result))
    return []


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="usgen", description="USGen: generative ultrasound for 3D Slicer.")
    parser.add_argument("--version", action="version", version=f"usgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info(sub, common)
    _add_convert(sub, common)
    _add_sheet(sub, common)
    _add_simulate(sub, common)
    _add_demo(sub, common)
    _add_dataset(sub, common)
    add_cfd_commands(sub, common)
    add_enhance_commands(sub, common)
    add_echo_commands(sub, common)
    _add_bench(sub, common)
    return parser


def _fail(message: str) -> int:
    print(f"usgen: error: {message}", file=sys.stderr)
    progress.emit({"error": message})
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(enhance_default_action(sys.argv[1:] if argv is None else list(argv)))
    except UsgenInputError as err:
        return _fail(str(err))
    progress.configure("json" if args.progress_json else "quiet" if args.quiet else "bar")
    try:
        # Library warnings (pydicom, numpy, imageio) would add lines around the one error line;
        # they are recorded and dropped: a problem that matters is raised as UsgenInputError.
        with stop_signals_raise(), warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            limits.set_memory_budget(limits.parse_memory(args.max_memory))
            outputs = args.run(args)
        _done(outputs, args)
    except BrokenPipeError:  # `usgen info X | head`: the reader left; no traceback, exit as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # nor one when Python flushes at exit
        return 141
    except UsgenInputError as err:
        return _fail(str(err))
    except RecursionError:  # deeply nested input (JSON, DICOM sequences) that the parsers recurse into
        return _fail("input is nested too deeply to read")
    except JobInterrupted as err:  # SIGTERM, SIGHUP: cleaned up like Ctrl-C, exit as the signal would
        print(f"usgen: stopped by {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print("usgen: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not bad input: keep the traceback for the report
        traceback.print_exc()
        print(f"usgen: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        progress.emit({"error": f"internal error: {type(err).__name__}: {err}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
