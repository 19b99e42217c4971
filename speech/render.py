"""A transcript in the answer formats clients ask for: json, text, verbose_json, srt, vtt."""

from __future__ import annotations

from typing import Any, Literal

from providers.speech.types import Transcript

ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "verbose_json", "srt", "vtt")
MEDIA_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


def as_json(transcript: Transcript, *, verbose: bool) -> dict[str, Any]:
    """The service's shape: ``{text, language, duration_s, segments?}``."""
    body: dict[str, Any] = {
        "text": transcript.text,
        "language": transcript.language,
        "duration_s": transcript.duration_s,
    }
    if verbose:
        body["segments"] = [
            {"id": i, "start": s.start, "end": s.end, "text": s.text}
            for i, s in enumerate(transcript.segments)
        ]
    return body


def as_openai(transcript: Transcript, *, verbose: bool) -> dict[str, Any]:
    """OpenAI's shapes: ``{text}``, or verbose_json's task/language/duration/segments."""
    if not verbose:
        return {"text": transcript.text}
    return {
        "task": "transcribe",
        "language": transcript.language,
        "duration": transcript.duration_s,
        "text": transcript.text,
        "segments": [
            {"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": []}
            for i, s in enumerate(transcript.segments)
        ],
    }


def as_subtitles(transcript: Transcript, kind: Literal["srt", "vtt"]) -> str:
    """SubRip or WebVTT cues, one per segment (the whole text as one cue without segments)."""
    cues = [(s.start, s.end, s.text) for s in transcript.segments if s.text]
    if not cues and transcript.text:
        cues = [(0.0, transcript.duration_s, transcript.text)]
    separator = "," if kind == "srt" else "."
    blocks = []
    for number, (start, end, text) in enumerate(cues, 1):
        times = f"{_stamp(start, separator)} --> {_stamp(end, separator)}"
        blocks.append(f"{number}\n{times}\n{text}\n" if kind == "srt" else f"{times}\n{text}\n")
    body = "\n".join(blocks)
    return f"WEBVTT\n\n{body}" if kind == "vtt" else body


def _stamp(seconds: float, separator: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
