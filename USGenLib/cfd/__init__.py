"""Colour-flow-Doppler (CFD) removal: CFD cine -> greyscale B-mode cine."""

from USGenLib.cfd.detect import color_flow_fraction, color_flow_mask, color_mask, has_color_flow, removal_mask

__all__ = ["color_flow_mask", "color_flow_fraction", "has_color_flow", "color_mask", "removal_mask"]
