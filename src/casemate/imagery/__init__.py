"""Imagery intelligence: detection, recognition and identification (DRI) on large rasters.

Inference (raster -> tiles -> ONNX Runtime -> seam merge -> DRI grading -> GeoJSON/GeoPackage)
never imports torch; only `casemate.imagery.model` (training, export) does.
"""
