"""Which audio container a file is, decided by its first bytes (never its name).

Uploads lie about their names and types; the magic numbers do not. The formats are the ones
OpenAI's transcription API takes: wav, mp3, m4a/mp4, ogg/opus, webm, flac.
"""

from __future__ import annotations

#: Content type of each recognised container (sent on to remote providers).
CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "mp4": "audio/mp4",
    "ogg": "audio/ogg",
    "webm": "audio/webm",
    "flac": "audio/flac",
}
SUPPORTED = "wav, mp3, m4a/mp4, ogg/opus, webm, flac"
#: File name extension remote providers recognise, per container.
EXTENSIONS = {
    "wav": "wav",
    "mp3": "mp3",
    "mp4": "m4a",
    "ogg": "ogg",
    "webm": "webm",
    "flac": "flac",
}


def sniff_audio(head: bytes) -> str | None:
    """The container of a file starting with ``head`` (16 bytes suffice), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM (and Matroska)
        return "webm"
    if head[4:8] == b"ftyp":  # ISO base media: m4a, mp4
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"  # an MPEG audio frame sync (layer bits set, so not ADTS AAC)
    return None
