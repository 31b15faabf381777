"""Report notes with a kind, so renderers select them by what they are, not by their wording.

    technique     what a step did or could not do (from its ``StepOutput.notes``)
    no_speedup    measured no (clear) speed-up over the baseline at some batch size
    not_smaller   the artifact is not smaller on disk than the baseline's
    busy_machine  other processes used the CPU while this was measured: latencies unreliable
    warning       anything else the user should read before trusting a number
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

NoteKind = Literal["technique", "no_speedup", "not_smaller", "busy_machine", "warning"]
NOTE_KINDS: tuple[str, ...] = NoteKind.__args__


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: NoteKind
    text: str

    def __str__(self) -> str:
        return self.text
