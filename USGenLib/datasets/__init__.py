"""Paired training data: CFD overlays on B-mode cines, a beating-heart echo phantom, enhancement pairs,
their on-disk layouts (USGen item folders + manifest.csv, EchoNet-Dynamic) and torch Datasets.

Generation: ``usgen dataset cfd|echo|enhance`` or ``generate_dataset(DatasetRequest(...))``.
"""

from USGenLib.datasets.color_flow import (ColorFlowClip, ColorFlowSettings, FlowField, render_color_flow)
from USGenLib.datasets.generate import DatasetRequest, generate_dataset

__all__ = ["ColorFlowClip", "ColorFlowSettings", "FlowField", "render_color_flow", "DatasetRequest",
           "generate_dataset"]
