"""The bottom layer: what every other layer may use and nothing here imports from above.

Errors (``torchslim.errors``), atomic I/O, logging, caches and device selection live beside
this package as single modules; this package holds the shared machinery techniques, formats
and the pipeline build on (see docs/architecture.md).
"""
