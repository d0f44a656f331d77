"""`python -m USGenLib ...` runs the `usgen` command (how the Slicer module starts it)."""

import sys

from USGenLib.cli import main

sys.exit(main())
