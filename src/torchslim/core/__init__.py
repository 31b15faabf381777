"""The bottom layer: what every other layer may use and nothing here imports from above.

Atomic file writes and locks (``files``), logging and progress (``log``, ``progress``), the
cache folder (``cache``), device selection (``device``) and the shared machinery techniques,
formats and the pipeline build on live here; the exception tree is ``torchslim.errors``
(see docs/architecture.md).
"""
