"""Every kind of .seq.nrrd the library writes, read the way Slicer reads it.

Slicer's vtkMRMLVolumeSequenceStorageNode reads a volume sequence with vtkITKImageSequenceReader:
ITK's NrrdImageIO with SetAxesReorderToUseNonListRangeAxisAsPixel (the list axis kept as an image
axis, a colour axis as the pixel), the list axis found from the NRRD kinds, IJK-to-LPS from the
first three axes' spacing, direction and origin, one frame per list index; then the node class
from ``DataNodeClassName`` and the index values from ``axis 0/3 index values``. ``read_like_slicer``
does the same with ITK's own Python wheel (the `itk` test dependency), so these files are checked
against the library Slicer is built on, not against USGen's reader. Also: label and mask cines
from every job and data set carry the label-map class, and USGen's reader honours the index unit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_cine
from USGenLib.io import read_seq_nrrd, write_seq_nrrd
from USGenLib.types import Cine

itk = pytest.importorskip("itk")
pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")  # ITK's SWIG wrapping

SCALAR, VECTOR, LABELMAP = "vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode", "vtkMRMLLabelMapVolumeNode"
ITK_COMPONENTS = {"unsigned_char": itk.UC, "float": itk.F, "unsigned_short": itk.US, "short": itk.SS}


def read_like_slicer(path) -> dict:
    """What Slicer's sequence reader gets from ``path``: frames (T, H, W[, 3]), the IJK-to-LPS
    geometry, index values, unit, label and the items' node class."""
    io = itk.NrrdImageIO.New()
    io.SetAxesReorderToUseNonListRangeAxisAsPixel()
    io.SetFileName(str(path))
    io.ReadImageInformation()
    meta = io.GetMetaDataDictionary()
    keys = set(meta.GetKeys())
    ndim = io.GetNumberOfDimensions()
    kinds = {axis: meta[f"NRRD_kinds[{axis}]"] for axis in range(ndim) if f"NRRD_kinds[{axis}]" in keys}
    (list_axis,) = [axis for axis, kind in kinds.items() if kind == "list"][:1]
    rgb = io.GetNumberOfComponents() == 3
    component = ITK_COMPONENTS[io.GetComponentTypeAsString(io.GetComponentType())]
    pixel = itk.RGBPixel[component] if rgb else component
    reader = itk.ImageFileReader[itk.Image[pixel, ndim]].New(FileName=str(path), ImageIO=io)
    reader.Update()
    image = reader.GetOutput()
    array = itk.array_from_image(image)  # (T, K, J, I[, 3]): ITK axes reversed
    frames = array[:, 0]  # one slice per frame
    spacing = np.array([image.GetSpacing()[i] for i in range(3)])
    origin = np.array([image.GetOrigin()[i] for i in range(3)])
    direction = itk.array_from_matrix(image.GetDirection())[:3, :3]
    values = next((meta[k] for k in ("axis 3 index values", "axis 0 index values") if k in keys), "")
    node_class = meta["DataNodeClassName"] if "DataNodeClassName" in keys else (VECTOR if rgb else SCALAR)
    return {"frames": frames, "count": array.shape[0], "spacing": spacing, "origin": origin, "direction": direction,
            "index_values": [float(v) for v in values.split()],
            "unit": meta[f"NRRD_units[{list_axis}]"] if f"NRRD_units[{list_axis}]" in keys else "",
            "label": meta[f"NRRD_labels[{list_axis}]"] if f"NRRD_labels[{list_axis}]" in keys else "",
            "node_class": node_class, "list_axis": list_axis}


def _labels_cine(frames=4):
    base = make_cine(frames=frames)
    data = (np.arange(base.frames.size) % 7).astype(np.uint8).reshape(base.frames.shape)
    return Cine(frames=data, spacing=base.spacing, origin=base.origin, direction=base.direction, times=base.times)


def _float_cine(frames=3):
    return make_cine(frames=frames, dtype=np.float32)


KINDS = {
    "grey": (lambda: make_cine(frames=5), False, SCALAR),
    "rgb": (lambda: make_cine(rgb=True, frames=4), False, VECTOR),
    "labels": (_labels_cine, True, LABELMAP),
    "attenuation (float)": (_float_cine, False, SCALAR),
    "one frame": (lambda: make_cine(frames=1), False, SCALAR),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_itk_reads_what_the_library_writes(tmp_path, kind):
    make, labels, node_class = KINDS[kind]
    cine = make()
    path = write_seq_nrrd(cine, tmp_path / "c.seq.nrrd", labels=labels)
    got = read_like_slicer(path)
    assert got["list_axis"] == 3  # the list axis is an image axis, the last one (Slicer 5.10 layout)
    assert got["count"] == cine.num_frames
    assert np.array_equal(got["frames"], cine.frames)
    assert np.allclose(got["spacing"], cine.spacing)
    assert np.allclose(got["origin"], cine.origin)
    assert np.allclose(got["direction"], cine.direction)
    assert got["index_values"] == pytest.approx(cine.times, abs=0)
    assert (got["unit"], got["label"]) == ("s", "time")
    assert got["node_class"] == node_class


def _write_list_first(path, frames, times, spacing=(0.3, 0.25, 1.5), origin=(1.0, 2.0, 3.0), unit=None, label=None,
                      node_class=SCALAR):
    """A grey sequence in the layout of the Sequences extension before Slicer 5.4: list axis first."""
    t, h, w = frames.shape
    lines = ["NRRD0004", "type: unsigned char", "dimension: 4", "space: left-posterior-superior",
             f"sizes: {t} {w} {h} 1",
             f"space directions: none ({spacing[0]},0,0) (0,{spacing[1]},0) (0,0,{spacing[2]})",
             "kinds: list domain domain domain", "endian: little", "encoding: raw",
             f"space origin: ({origin[0]},{origin[1]},{origin[2]})"]
    if label is not None:
        lines.append(f'labels: "{label}" "" "" ""')
    if unit is not None:
        lines.append(f'units: "{unit}" "" "" ""')
    lines += ["axis 0 index type:=numeric", "axis 0 index values:=" + " ".join(str(v) for v in times),
              f"DataNodeClassName:={node_class}"]
    # NRRD order is fastest first: the list index runs fastest, then i, j.
    body = np.ascontiguousarray(frames.transpose(1, 2, 0)).tobytes()
    path.write_bytes(("\n".join(lines) + "\n\n").encode() + body)
    return path


def test_older_list_first_layout_reads_the_same_in_itk_and_usgen(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 6, 8), dtype=np.uint8)
    path = _write_list_first(tmp_path / "old.seq.nrrd", frames, [0, 0.1, 0.2, 0.3], unit="s", label="time")
    got = read_like_slicer(path)
    # NrrdImageIO moves the list axis last, as Slicer needs it.
    assert got["list_axis"] == 3 and got["count"] == 4
    assert np.array_equal(got["frames"], frames)
    assert np.allclose(got["spacing"], (0.3, 0.25, 1.5)) and np.allclose(got["origin"], (1, 2, 3))
    assert got["index_values"] == [0, 0.1, 0.2, 0.3]
    ours = read_seq_nrrd(path)
    assert np.array_equal(ours.frames, frames)
    assert np.allclose(ours.times, [0, 0.1, 0.2, 0.3]) and np.allclose(ours.spacing, (0.3, 0.25, 1.5))


# --- the reader honours the index unit -----------------------------------------------------------


@pytest.mark.parametrize("unit,label,values,times,times_from", [
    ("s", "time", [0, 0.04, 0.08], [0, 0.04, 0.08], "file"),
    ("ms", "time", [0, 40, 80], [0, 0.04, 0.08], "file (ms, converted to s)"),
    # A Slicer DICOM sequence without frame times: index "frame", no unit, values 0, 1, 2.
    ("", "frame", [0, 1, 2], [0, 1, 2], "index 'frame' without times: index values kept as frame positions"),
    ("mm", "position", [-2.5, 0, 2.5], [-2.5, 0, 2.5], "index in mm, not a time: index values kept as frame positions"),
])
def test_reader_honours_the_index_unit(tmp_path, unit, label, values, times, times_from):
    frames = np.zeros((3, 4, 5), np.uint8)
    path = _write_list_first(tmp_path / "u.seq.nrrd", frames, values, unit=unit or None, label=label)
    cine = read_seq_nrrd(path)
    assert np.allclose(cine.times, times)
    assert cine.meta["times_from"] == times_from
    assert (cine.meta["index_unit"], cine.meta["index_name"]) == (unit, label)


def test_current_layout_in_ms_is_converted(tmp_path):
    cine = make_cine(frames=3, uniform_times=True)
    path = write_seq_nrrd(cine, tmp_path / "c.seq.nrrd")
    text = path.read_bytes().replace(b'units: "" "" "" "s"', b'units: "" "" "" "ms"')
    (tmp_path / "ms.seq.nrrd").write_bytes(text)
    assert np.allclose(read_seq_nrrd(tmp_path / "ms.seq.nrrd").times, cine.times / 1000)


# --- every label or mask cine the library writes is a label-map sequence --------------------------


def _class_of(path):
    return read_like_slicer(path)["node_class"]


def test_simulation_outputs_node_classes(usgen, tmp_path):
    assert usgen("simulate", "--phantom", "abdomen", "--sweep", "2", "--size", "32x32", "--device", "cpu",
                 "--out", tmp_path / "sim", "--quiet").code == 0
    classes = {name: _class_of(tmp_path / "sim" / name) for name in ("bmode.seq.nrrd", "labels.seq.nrrd", "attenuation.seq.nrrd")}
    assert classes == {"bmode.seq.nrrd": SCALAR, "labels.seq.nrrd": LABELMAP, "attenuation.seq.nrrd": SCALAR}
    meta = json.loads((tmp_path / "sim" / "meta.json").read_text())
    assert meta["device"] == "cpu"


@pytest.mark.parametrize("kind,expected", [
    ("cfd", {"cfd.seq.nrrd": VECTOR, "bmode.seq.nrrd": SCALAR, "mask.seq.nrrd": LABELMAP}),
    ("echo", {"cine.seq.nrrd": SCALAR, "lv_mask.seq.nrrd": LABELMAP}),
    ("enhance", {"lq.seq.nrrd": SCALAR, "hq.seq.nrrd": SCALAR, "labels.seq.nrrd": LABELMAP,
                 "attenuation.seq.nrrd": SCALAR}),
])
def test_dataset_item_node_classes(usgen, tmp_path, kind, expected):
    size, frames = {"cfd": ("32x32", 2), "echo": ("48x48", 8), "enhance": ("32x32", 2)}[kind]
    assert usgen("dataset", kind, "--n", "1", "--size", size, "--frames", frames, "--out", tmp_path / kind,
                 "--quiet").code == 0
    items = [p for p in (tmp_path / kind).rglob("*.seq.nrrd")]
    assert items
    by_name = {}
    for path in items:
        by_name.setdefault(path.name, set()).add(_class_of(path))
    assert {name: classes.pop() for name, classes in by_name.items() if len(classes) == 1} == expected


def test_cfd_remove_mask_is_a_label_map(usgen, tmp_path):
    assert usgen("dataset", "cfd", "--n", "1", "--size", "32x32", "--frames", "2", "--out", tmp_path / "d",
                 "--quiet").code == 0
    (colour,) = (tmp_path / "d").rglob("cfd.seq.nrrd")
    assert usgen("cfd", "remove", colour, tmp_path / "out", "--device", "cpu", "--quiet").code == 0
    assert _class_of(tmp_path / "out" / "cfd_mask.seq.nrrd") == LABELMAP
    assert _class_of(tmp_path / "out" / "bmode.seq.nrrd") == SCALAR
    got, source = read_like_slicer(tmp_path / "out" / "bmode.seq.nrrd"), read_like_slicer(colour)
    assert got["index_values"] == source["index_values"]  # plays frame by frame with its input
    assert json.loads((tmp_path / "out" / "report.json").read_text())["device"] == "cpu"
