"""What the USGen panel asks of `usgen` and what a finished job means for the Slicer scene, as
plain data.

This file imports neither slicer, qt, vtk nor USGenLib (whose packages may not be installed in
Slicer yet), so pytest checks it without Slicer (Testing/test_slicer_plan.py). USGen.py builds the
command lines here, runs them, and carries out the returned LoadPlan with Slicer's API.

A LoadPlan lists, per sequence browser, the .seq.nrrd files to load with the node class their
header names, which of them are label maps to turn into segmentation sequences (and with which
segment ids, names and colours), which browser they join (the input's, so frame k of an output
plays with frame k of the input), which view shows what, and the report figures for the panel.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field

# The list-axis-last .seq.nrrd layout that USGen writes and the Python 3.10+ that USGenLib needs
# are both in Slicer 5.10 and later.
MIN_SLICER_VERSION = (5, 10)

DEVICES = ("auto", "cpu", "cuda")
PROBES = ("convex", "linear")
QUALITIES = ("low", "high")
ECHO_VIEWS = ("A4C", "PSAX", "PLAX")
ECHO_VIEW_CHOICES = ECHO_VIEWS + ("all",)      # all: a data set of the three views in turn
DATASET_KINDS = ("cfd", "echo", "enhance")

SCALAR = "vtkMRMLScalarVolumeNode"
VECTOR = "vtkMRMLVectorVolumeNode"
LABELMAP = "vtkMRMLLabelMapVolumeNode"
SEGMENTATION = "vtkMRMLSegmentationNode"

# Slicer's side-by-side layout (vtkMRMLLayoutNode::SlicerLayoutSideBySideView): Red left, Yellow right.
# A plan's layout "" keeps the user's layout (one cine goes to the red view).
LAYOUT_SIDE_BY_SIDE = "SideBySide"

# Readable node names for the files the jobs write (file stem -> name part).
PRETTY_NAMES = {"bmode": "B-mode", "labels": "labels", "attenuation": "attenuation", "enhanced": "enhanced",
                "cfd_mask": "CFD mask", "lv": "LV", "lv_mask": "LV", "cine": "cine"}

# Segments of the single-structure masks: (label value, segment id, name, colour 0..1).
CFD_SEGMENTS = ((1, "cfd", "CFD", (0.9, 0.2, 0.1)),)
LV_SEGMENTS = ((1, "lv", "LV", (0.95, 0.35, 0.35)),)

# Report entries shown first, in this order; any other scalar entry follows.
REPORT_FIRST = ("device", "view", "requested_ef", "regressed_ef", "mask_ef", "ef", "frames", "coverage", "seconds")


#
# Command lines
#


def usgenArguments(job, *args):
    """Arguments for Slicer's Python that run ``usgen <job> <args> --progress-json``; ``job`` is
    one word or several ("cfd remove")."""
    return ["-m", "USGenLib", *str(job).split(), *(str(arg) for arg in args), "--progress-json"]


def _device(device):
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return ["--device", device]


def simulateArguments(outDir, ct=None, phantom=None, pose=None, probe="convex", quality="low", sweep=1,
                      size=(256, 256), seed=0, enhance=False, device="auto"):
    """``usgen simulate``: a CT or label volume file (or a phantom), an optional pose file."""
    if (ct is None) == (phantom is None):
        raise ValueError("give a CT/label volume or a phantom, not both or neither")
    if probe not in PROBES or quality not in QUALITIES:
        raise ValueError(f"probe must be one of {PROBES}, quality one of {QUALITIES}")
    if enhance and quality != "low":  # the enhancer was trained on the fast low-quality simulation
        raise ValueError("Enhance works on the low-quality simulation: choose quality low")
    args = ["--ct", ct] if ct is not None else ["--phantom", phantom]
    if pose is not None:
        args += ["--pose", pose]
    args += ["--probe", probe, "--quality", quality, "--sweep", int(sweep), "--size", f"{int(size[0])}x{int(size[1])}",
             "--seed", int(seed)]
    if enhance:
        args.append("--enhance")
    return usgenArguments("simulate", *args, *_device(device), "--out", outDir)


def cfdRemoveArguments(inputPath, outDir, device="auto"):
    """``usgen cfd remove IN OUT_DIR``: a colour cine to B-mode cine + CFD mask + report."""
    return usgenArguments("cfd remove", inputPath, outDir, *_device(device))


def enhanceArguments(simulationFolder, outDir, weights=None, device="auto"):
    """``usgen enhance IN OUT_DIR``: IN is a `usgen simulate` output folder."""
    args = [simulationFolder, outDir] + (["--weights", weights] if weights else [])
    return usgenArguments("enhance", *args, *_device(device))


def echoArguments(outDir, view="A4C", ef=55.0, n=1, frames=32, seed=0, device="auto", efHigh=None):
    """``usgen echo generate``: clips of one view ("all": the three in turn) at one ejection fraction, or
    with EFs spread from ``ef`` to ``efHigh``."""
    if view not in ECHO_VIEW_CHOICES:
        raise ValueError(f"view must be one of {ECHO_VIEW_CHOICES}, got {view!r}")
    efs = ("--ef", _number(ef)) if efHigh is None else ("--ef-range", _number(ef), _number(efHigh))
    return usgenArguments("echo generate", "--view", view, *efs, "--n", int(n), "--frames", int(frames),
                          "--seed", int(seed), *_device(device), "--out", outDir)


def datasetArguments(kind, n, outDir, seed=0):
    """``usgen dataset KIND``: paired training data (generated on the CPU; no --device)."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"kind must be one of {DATASET_KINDS}, got {kind!r}")
    return usgenArguments("dataset", kind, "--n", int(n), "--out", outDir, "--seed", int(seed))


def _number(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


#
# Reading what a job wrote (headers and reports only, never pixels)
#


def seqNrrdFields(path, limit=1 << 20):
    """Header fields (``key: value``) and key/value pairs (``key:=value``) of a NRRD file, in one dict."""
    with open(path, "rb") as fh:
        head = fh.read(limit)
    text = head.split(b"\n\n", 1)[0].decode("latin-1")
    fields = {}
    for line in text.splitlines()[1:]:
        if line.startswith("#"):
            continue
        match = re.match(r"([^:]+?)(:=|: )(.*)", line)
        if match:
            fields[match.group(1).strip()] = match.group(3).strip()
    return fields


def sequenceInfo(path):
    """(node class of the items, frame count, index values, index unit) of a .seq.nrrd file, as
    Slicer's reader will see them."""
    fields = seqNrrdFields(path)
    kinds = fields.get("kinds", "").split()
    sizes = [int(s) for s in fields.get("sizes", "").split()]
    listAxis = kinds.index("list") if "list" in kinds else None
    frames = sizes[listAxis] if listAxis is not None and listAxis < len(sizes) else 1
    values = (fields.get("axis 3 index values") or fields.get("axis 0 index values") or "").split()
    units = re.findall(r'"([^"]*)"', fields.get("units", ""))
    unit = units[listAxis] if listAxis is not None and listAxis < len(units) else ""
    nodeClass = fields.get("DataNodeClassName") or (VECTOR if kinds and kinds[0].lower() in ("rgb-color", "rgba-color")
                                                   else SCALAR)
    return nodeClass, frames, values, unit


def readJson(path):
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def reportLines(report):
    """The report's scalar entries as "key: value" lines, the interesting ones first."""
    if not report:
        return []
    scalars = {key: value for key, value in report.items()
               if isinstance(value, (str, int, float, bool)) and not (isinstance(value, float) and math.isnan(value))}
    for key in ("timing", "timings"):  # simulate's meta.json and echo's reports keep their times in a dict
        if isinstance(report.get(key), dict):
            scalars.update({f"{name} s" if key == "timings" else name: value for name, value in report[key].items()
                            if isinstance(value, (int, float))})
    order = [key for key in REPORT_FIRST if key in scalars] + sorted(key for key in scalars if key not in REPORT_FIRST)
    return [f"{key}: {_show(scalars[key])}" for key in order]


def _show(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def deviceUsed(report):
    """The device a job ran on, as its report says ("cpu", "cuda:0"), or None."""
    if not report:
        return None
    device = report.get("device")
    return str(device) if device else None


#
# The load plan
#


@dataclass
class Segment:
    labelValue: int
    segmentId: str
    name: str
    color: tuple


@dataclass
class SequenceLoad:
    """One .seq.nrrd output: loaded as a sequence whose items are ``nodeClass``; with ``segments``
    its label maps become a segmentation sequence (label value i -> segments[i-1])."""

    path: str
    name: str
    nodeClass: str
    frames: int
    indexValues: list
    indexUnit: str = ""
    segments: list = field(default_factory=list)
    view: str = ""  # "Red" / "Yellow": the slice view whose background it is, "" for none

    @property
    def proxyClass(self):
        return SEGMENTATION if self.segments else self.nodeClass


@dataclass
class BrowserPlan:
    """Sequences that play together. ``joinInput``: they join the browser of the input sequence."""

    name: str
    sequences: list
    joinInput: bool = False


@dataclass
class LoadPlan:
    job: str
    browsers: list = field(default_factory=list)
    labelVolumes: list = field(default_factory=list)  # plain .nrrd label maps (simulate's FoV mask): (path, name)
    layout: str = ""
    linkViews: bool = False
    reports: list = field(default_factory=list)  # (title, lines)
    device: str = ""
    folder: str = ""  # shown as a link (training data)
    problems: list = field(default_factory=list)  # what does not line up (shown, never silently dropped)

    @property
    def sequences(self):
        return [sequence for browser in self.browsers for sequence in browser.sequences]


def tissueSegments(meta):
    """Segments for simulation labels from the tissue table in simulate's meta.json (label 0, air,
    is the background)."""
    rows = (meta or {}).get("tissue_table") or []
    segments = []
    for row in sorted(rows, key=lambda r: int(r["label"])):
        label = int(row["label"])
        if label == 0:
            continue
        color = tuple(float(c) for c in row.get("color", (0.5, 0.5, 0.5)))
        segments.append(Segment(label, segmentIdFor(row["name"]), str(row["name"]), color))
    return segments


def segmentIdFor(name):
    """A segment id from a name: lower case, words joined by "_" (the same in every frame)."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "segment"


def labelValuesToIds(segments):
    """Segment ids by label value 1..max (what ImportLabelmapToSegmentationNode maps value i to);
    values without a segment get "" and are skipped by Slicer."""
    if not segments:
        return []
    byValue = {segment.labelValue: segment.segmentId for segment in segments}
    return [byValue.get(value, "") for value in range(1, max(byValue) + 1)]


def _stem(path):
    name = os.path.basename(path)
    for ending in (".seq.nrrd", ".seq.nhdr", ".nrrd"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return os.path.splitext(name)[0]


def _segmentsFor(stem, nodeClass, meta):
    if nodeClass != LABELMAP:
        return []
    if stem == "cfd_mask":
        return [Segment(*row) for row in CFD_SEGMENTS]
    if stem in ("lv", "lv_mask"):
        return [Segment(*row) for row in LV_SEGMENTS]
    if stem == "labels":
        return tissueSegments(meta)
    return [Segment(1, segmentIdFor(stem), PRETTY_NAMES.get(stem, stem), (0.9, 0.9, 0.2))]


def _sequence(path, prefix, meta):
    nodeClass, frames, values, unit = sequenceInfo(path)
    stem = _stem(path)
    name = f"{prefix} {PRETTY_NAMES.get(stem, stem)}".strip()
    return SequenceLoad(path=path, name=name, nodeClass=nodeClass, frames=frames, indexValues=values,
                        indexUnit=unit, segments=_segmentsFor(stem, nodeClass, meta))


def _files(outputs):
    """The output paths, folders expanded (a job may name its folder), in a stable order."""
    files = []
    for path in outputs:
        if os.path.isdir(path):
            for folder, _dirs, names in sorted(os.walk(path)):
                files += [os.path.join(folder, name) for name in sorted(names) if not name.startswith(".")]
        else:
            files.append(path)
    return files


def _sameIndex(a, b):
    if len(a) != len(b):
        return False
    try:
        return all(abs(float(x) - float(y)) <= 1e-9 * max(1.0, abs(float(x))) for x, y in zip(a, b))
    except ValueError:
        return list(a) == list(b)


def loadPlan(job, outputs, inputSequence=None, inputName=""):
    """What to do in the scene with the files a finished job wrote (its ``done`` line's outputs).

    job:           "convert", "simulate", "cfd remove", "enhance", "echo generate" or "dataset".
    inputSequence: the .seq.nrrd the module saved the input cine to (CFD removal, enhancement), or
                   None; its browser is the one the outputs join.
    inputName:     the input node's name, prefixed to output node names.
    """
    files = _files(outputs)
    plan = LoadPlan(job=job)
    if job == "dataset":
        folders = [path for path in outputs if os.path.isdir(path)]
        plan.folder = folders[0] if folders else (os.path.dirname(files[0]) if files else "")
        manifest = os.path.join(plan.folder, "manifest.csv")
        count = _manifestRows(manifest)
        plan.reports.append(("Training data", [f"items: {count}" if count is not None else "items: see folder",
                                                f"folder: {plan.folder}"]))
        plan.device = "cpu"
        return plan

    byFolder = {}
    for path in files:
        byFolder.setdefault(os.path.dirname(path), []).append(path)
    for folder in sorted(byFolder):
        paths = byFolder[folder]
        report = readJson(os.path.join(folder, "report.json"))
        meta = readJson(os.path.join(folder, "meta.json"))
        # simulate's meta.json holds its tissue table and device; an enhancement run into a
        # simulate folder reads the tissue table from the folder it enhanced.
        if meta is None and inputSequence:
            meta = readJson(os.path.join(os.path.dirname(inputSequence), "meta.json"))
        summary = report or meta
        if summary is not None:
            title = os.path.basename(folder) if len(byFolder) > 1 else job
            plan.reports.append((title, reportLines(summary)))
            plan.device = plan.device or (deviceUsed(summary) or "")
        prefix = inputName or (os.path.basename(folder) if len(byFolder) > 1 else "")
        sequences = [_sequence(path, prefix, meta) for path in paths if path.lower().endswith((".seq.nrrd", ".seq.nhdr"))]
        plan.labelVolumes += [(path, f"{prefix} {PRETTY_NAMES.get(_stem(path), _stem(path))}".strip())
                              for path in paths if path.lower().endswith(".nrrd")
                              and not path.lower().endswith((".seq.nrrd", ".seg.nrrd"))]
        if not sequences:
            continue
        sequences.sort(key=_masterOrder)
        joinInput = inputSequence is not None and job in ("cfd remove", "enhance")
        name = f"{inputName or sequences[0].name} browser"
        plan.browsers.append(BrowserPlan(name=name, sequences=sequences, joinInput=joinInput))

    _placeViews(plan, inputSequence)
    _checkFrames(plan, inputSequence)
    return plan


def _masterOrder(sequence):
    # The picture a reviewer looks at first leads; label maps and maps follow.
    stem = _stem(sequence.path)
    order = ["bmode", "cine", "enhanced", "attenuation", "labels", "cfd_mask", "lv", "lv_mask"]
    return (order.index(stem) if stem in order else len(order), stem)


def _placeViews(plan, inputSequence):
    """Input left (Red), output right (Yellow), views linked; a single cine fills one view."""
    pictures = [s for browser in plan.browsers for s in browser.sequences if not s.segments]
    if plan.job in ("cfd remove", "enhance") and inputSequence is not None and pictures:
        main = next((s for s in pictures if _stem(s.path) in ("bmode", "enhanced")), pictures[0])
        main.view = "Yellow"
        plan.layout, plan.linkViews = LAYOUT_SIDE_BY_SIDE, True
    elif plan.job == "simulate" and pictures:
        pictures[0].view = "Red"
        second = next((s for s in pictures[1:] if _stem(s.path) == "enhanced"), pictures[1] if len(pictures) > 1 else None)
        if second is not None:
            second.view = "Yellow"
            plan.layout, plan.linkViews = LAYOUT_SIDE_BY_SIDE, True
    elif plan.job == "echo generate" and plan.browsers:
        firsts = [browser.sequences[0] for browser in plan.browsers if not browser.sequences[0].segments]
        for sequence, view in zip(firsts, ("Red", "Yellow")):
            sequence.view = view
        if len(firsts) > 1:
            plan.layout, plan.linkViews = LAYOUT_SIDE_BY_SIDE, True
    elif pictures:
        pictures[0].view = "Red"


def _checkFrames(plan, inputSequence):
    """Every sequence of a browser must have the same index values as its master (and the input's
    when joining it), else frame k would not play with frame k."""
    reference = None
    if inputSequence is not None:
        try:
            _cls, _frames, values, _unit = sequenceInfo(inputSequence)
            reference = values
        except OSError:
            reference = None
    for browser in plan.browsers:
        master = browser.sequences[0].indexValues if not (browser.joinInput and reference) else reference
        for sequence in browser.sequences:
            if not _sameIndex(sequence.indexValues, master):
                plan.problems.append(f"{os.path.basename(sequence.path)}: {sequence.frames} frames whose index values "
                                     f"differ from the {'input' if browser.joinInput else 'first sequence'}'s")


def _manifestRows(path):
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return sum(1 for _row in csv.DictReader(fh))
    except OSError:
        return None


#
# Defaults and names
#


def defaultProbePose(ijkToRas, dimensions):
    """The probe-to-RAS pose `usgen simulate` uses without --pose (USGenLib.simulation: the centre
    of the volume's j = 0 face, x along i, aiming along +j, the plane through the middle slice),
    before it slides onto the skin; rows of a 4x4 matrix. ``ijkToRas`` is 4x4 (rows)."""
    ni, _nj, nk = dimensions
    centre = [sum(ijkToRas[r][c] * v for c, v in enumerate(((ni - 1) / 2.0, 0.0, (nk - 1) / 2.0, 1.0))) for r in range(3)]
    axisI = _unit([ijkToRas[r][0] for r in range(3)])
    axisJ = [ijkToRas[r][1] for r in range(3)]
    along = sum(a * b for a, b in zip(axisI, axisJ))
    axisY = _unit([j - along * i for i, j in zip(axisI, axisJ)])
    axisZ = [axisI[1] * axisY[2] - axisI[2] * axisY[1], axisI[2] * axisY[0] - axisI[0] * axisY[2],
             axisI[0] * axisY[1] - axisI[1] * axisY[0]]
    return [[axisI[r], axisY[r], axisZ[r], centre[r]] for r in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def _unit(vector):
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def poseJson(probeToRas):
    """A `usgen simulate --pose` file for a probe-to-RAS matrix (rows), as Slicer's transform gives it."""
    return json.dumps({"space": "RAS", "matrix": [[float(v) for v in row] for row in probeToRas]}, indent=1)


def outputFolderName(job, inputName=""):
    """A folder name for a job's outputs: the job and the input, file-system safe."""
    base = f"{job.replace(' ', '-')}-{inputName}" if inputName else job.replace(" ", "-")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:80]


#
# Python packages
#


def readRequirements(path):
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    with open(path, encoding="utf-8") as fh:
        return [line.split("#", 1)[0].strip() for line in fh if line.split("#", 1)[0].strip()]


def requirementName(spec):
    return re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0].strip().lower().replace("_", "-")


def splitTorch(requirements):
    """(the torch requirement or None, the others): torch goes through PyTorch Utils when present."""
    torch = [spec for spec in requirements if requirementName(spec) == "torch"]
    return (torch[0] if torch else None), [spec for spec in requirements if requirementName(spec) != "torch"]
