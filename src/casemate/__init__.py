"""Casemate: a sovereign AI platform for air-gapped networks."""

__version__ = "0.1.0"
