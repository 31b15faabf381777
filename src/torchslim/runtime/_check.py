"""The check every runtime makes first: is this artifact of the one format it runs?"""

from __future__ import annotations

from pathlib import Path

from torchslim.errors import ArtifactError


def check_format(runtime: str, manifest, path: Path, expected: str, what: str, advice: str = "") -> None:
    """ArtifactError unless ``manifest.format`` is ``expected``: names the runtime, what it runs
    (``what``), the artifact and the runtime recorded with it, plus ``advice`` (``", or ..."``)."""
    if manifest.format != expected:
        raise ArtifactError(f"The {runtime} runtime runs {what}, not {manifest.format!r} artifacts ({str(path)!r}); "
                            f"load it with its own runtime ({manifest.runtime!r}){advice}.")
