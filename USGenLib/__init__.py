"""USGen: generative ultrasound for 3D Slicer (CFD removal, sim-to-real enhancement, echo synthesis).

Pure Python; never imports slicer, qt, vtk or ctk. Every job is reachable from the `usgen` command.
"""

from USGenLib.errors import UsgenInputError
from USGenLib.types import Cine, Volume

__version__ = "0.1.0"
__all__ = ["Cine", "Volume", "UsgenInputError", "__version__"]
