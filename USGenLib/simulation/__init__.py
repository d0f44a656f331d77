"""Ultrasound simulation: CT or label map -> B-mode + labels + attenuation map + FoV mask.

Public API:
    Simulator(volume, probe, quality, size, seed, ...).simulate(poses) -> SimulationResult
    SimulationResult.write(out_dir)   bmode/labels/attenuation .seq.nrrd, fov_mask.nrrd, meta.json
    make_phantom(name, seed)          "abdomen" | "fetal" label Volume
    make_probe(kind, **fields)        ConvexProbe | LinearProbe
    sweep_poses(base, frames, span_mm, tilt_deg, rotate_deg), read_poses(path)
    demo_sweep(out_dir)               small sweep for `usgen demo`
See docs/simulation.md.
"""

from USGenLib.simulation.ct_properties import hu_to_density, hu_to_labels, hu_to_properties
from USGenLib.simulation.image_formation import QUALITIES, FrameRenderer, ImagingSettings, Quality
from USGenLib.simulation.medium import AcousticMedium
from USGenLib.simulation.phantoms import PHANTOMS, make_phantom, phantom_to_ct
from USGenLib.simulation.pose import read_poses
from USGenLib.simulation.probe import ConvexProbe, LinearProbe, Probe, make_probe
from USGenLib.simulation.simulate import SimulationResult, Simulator, demo_sweep, simulate_volume
from USGenLib.simulation.sweep import sweep_poses
from USGenLib.simulation.tissues import LABELS, TISSUES, Tissue, tissue_table

__all__ = [
    "AcousticMedium", "ConvexProbe", "FrameRenderer", "ImagingSettings", "LABELS", "LinearProbe", "PHANTOMS",
    "Probe", "QUALITIES", "Quality", "SimulationResult", "Simulator", "TISSUES", "Tissue", "demo_sweep",
    "hu_to_density", "hu_to_labels", "hu_to_properties", "make_phantom", "make_probe",
    "phantom_to_ct", "read_poses", "simulate_volume", "sweep_poses", "tissue_table",
]
