"""Speech use cases: transcribe an upload, synthesize a text, list voices.

:class:`SpeechService` is the entry point; :mod:`.transcription` and :mod:`.synthesis` do
the work, :mod:`.access` finds the org's upstream and holds its limits.
"""

from services.speech.options import (
    SYNTHESIZE_ROUTE,
    TRANSCRIBE_ROUTE,
    TRANSLATE_ROUTE,
    SpeechAudio,
    SynthesisOptions,
    TranscribeOptions,
)
from services.speech.service import SpeechService
from services.speech.transcription_jobs import TRANSCRIBE_TASK, stored_transcript

__all__ = [
    "SYNTHESIZE_ROUTE",
    "TRANSCRIBE_ROUTE",
    "TRANSCRIBE_TASK",
    "TRANSLATE_ROUTE",
    "SpeechAudio",
    "SpeechService",
    "SynthesisOptions",
    "TranscribeOptions",
    "stored_transcript",
]
