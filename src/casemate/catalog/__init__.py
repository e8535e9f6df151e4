"""The catalog: labelled, versioned assets with lineage; ingest of files and folders."""

from casemate.catalog.service import KINDS, Catalog, Version

__all__ = ["KINDS", "Catalog", "Version"]
