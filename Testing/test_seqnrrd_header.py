"""The .seq.nrrd header follows Slicer's volume sequence writer field by field.

Reference: Slicer's vtkMRMLVolumeSequenceStorageNode::WriteDataInternal and
vtkITKImageSequenceWriter (4-D ITK image: spatial axes, then the list axis last; a leading
RGB-color axis for colour; ``axis 3 index type/values`` as key/value pairs; DataNodeClassName),
and slicerio's independent writer of the same format.
"""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
import slicerio

from conftest import make_cine
from USGenLib.io import write_cine, write_seq_nrrd


def header_lines(path) -> list[str]:
    raw = open(path, "rb").read(4096)
    return raw.split(b"\n\n", 1)[0].decode("ascii").splitlines()


@pytest.mark.parametrize("rgb", [False, True])
def test_header_matches_slicer_conventions(tmp_path, rgb):
    cine = make_cine(rgb=rgb, frames=4)
    path = write_cine(cine, tmp_path / "c.seq.nrrd")
    lines = header_lines(path)
    assert lines[0] == "NRRD0004"
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line and not line.startswith("#"))
    pairs = dict(line.split(":=", 1) for line in lines if ":=" in line)
    ndim = 5 if rgb else 4
    assert fields["type"] == "unsigned char"
    assert fields["dimension"] == str(ndim)
    assert fields["space"] == "left-posterior-superior"
    assert fields["sizes"] == ("3 " if rgb else "") + "32 24 1 4"
    assert fields["kinds"] == ("RGB-color " if rgb else "") + "domain domain domain list"
    assert fields["labels"].split() == ['""'] * (ndim - 1) + ['"time"']
    assert fields["units"].split() == ['""'] * (ndim - 1) + ['"s"']
    assert fields["endian"] == "little" and fields["encoding"] == "gzip"
    dirs = fields["space directions"].split()
    assert (dirs[0] == "none") == rgb and dirs[-1] == "none"
    spatial = np.array([[float(v) for v in d.strip("()").split(",")] for d in dirs if d != "none"])
    assert np.allclose(spatial.T, cine.direction * cine.spacing)  # column = axis direction * spacing
    assert np.allclose([float(v) for v in fields["space origin"].strip("()").split(",")], cine.origin)
    # Key/value pairs Slicer reads back into the sequence node.
    assert pairs["axis 3 index type"] == "numeric"
    assert np.array([float(v) for v in pairs["axis 3 index values"].split()]) == pytest.approx(cine.times, abs=0)
    assert pairs["DataNodeClassName"] == ("vtkMRMLVectorVolumeNode" if rgb else "vtkMRMLScalarVolumeNode")


@pytest.mark.parametrize("rgb", [False, True])
def test_header_agrees_with_slicerio_writer(tmp_path, rgb):
    cine = make_cine(rgb=rgb, frames=3)
    ours = nrrd.read_header(str(write_cine(cine, tmp_path / "ours.seq.nrrd")))
    frames = []
    for t in range(cine.num_frames):
        vox = cine.frames[t].transpose(2, 1, 0)[..., None] if rgb else cine.frames[t].T[..., None]
        frame = {"voxels": vox, "ijkToLPS": cine.index_to_physical()}
        if rgb:
            frame["component"] = {"kind": "RGB-color", "label": None, "unit": None}
        frames.append(frame)
    seq = slicerio.create_sequence(frames, index_values=[repr(float(t)) for t in cine.times])
    slicerio.write_volume(str(tmp_path / "ref.seq.nrrd"), seq, compression_level=1)
    ref = nrrd.read_header(str(tmp_path / "ref.seq.nrrd"))
    for key in ("dimension", "space", "sizes", "kinds", "labels", "units", "encoding"):
        assert np.array_equal(np.asarray(ours[key]), np.asarray(ref[key])), key
    assert np.allclose(ours["space directions"], ref["space directions"], equal_nan=True)
    assert np.allclose(ours["space origin"], ref["space origin"])
    ref_axis = 4 if rgb else 3  # slicerio numbers the raw NRRD axis; Slicer's reader wants "axis 3"
    assert ours["axis 3 index values"] == ref[f"axis {ref_axis} index values"]
    # Both files decode to the same voxels.
    a, _ = nrrd.read(str(tmp_path / "ours.seq.nrrd"))
    b, _ = nrrd.read(str(tmp_path / "ref.seq.nrrd"))
    assert np.array_equal(a, b)
    # And slicerio, which reads as Slicer does, finds the same sequence in ours.
    vol = slicerio.read_volume(str(tmp_path / "ours.seq.nrrd"))
    assert slicerio.number_of_frames(vol) == cine.num_frames
    assert np.allclose(vol["ijkToLPS"], cine.index_to_physical())


def test_label_cine_header_names_the_label_map_class(tmp_path):
    cine = make_cine(frames=3)
    for path in (write_cine(cine, tmp_path / "a.seq.nrrd", labels=True),
                 write_seq_nrrd(cine, tmp_path / "b.seq.nrrd", labels=True)):
        pairs = dict(line.split(":=", 1) for line in header_lines(path) if ":=" in line)
        assert pairs["DataNodeClassName"] == "vtkMRMLLabelMapVolumeNode"
        # the rest is the grey cine's header, field for field
        grey = [line for line in header_lines(write_cine(cine, tmp_path / "g.seq.nrrd")) if "DataNodeClassName" not in line]
        assert [line for line in header_lines(path) if "DataNodeClassName" not in line] == grey
