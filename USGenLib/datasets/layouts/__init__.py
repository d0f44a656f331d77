"""On-disk data-set layouts: USGen item folders with manifest.csv, and EchoNet-Dynamic."""

from USGenLib.datasets.layouts.manifest import (ITEM_FILES, KINDS, MANIFEST_NAME, assign_splits, coverage_quartiles,
                                                manifest_columns, read_manifest, write_manifest)

__all__ = ["ITEM_FILES", "KINDS", "MANIFEST_NAME", "assign_splits", "coverage_quartiles", "manifest_columns",
           "read_manifest", "write_manifest"]
