"""Why an audio file cannot be transcribed, as stable codes naming the file.

Nothing here imports FastAPI: the errors are ``core.errors.ApiError`` subclasses, so the
API answers them in the one error shape without a mapping layer.
"""

from __future__ import annotations

from core.errors import ApiError


class AudioError(ApiError):
    """An upload that cannot become 16 kHz samples; ``status`` and ``code`` per subclass."""

    status: int = 422
    code: str = "invalid_audio"

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(self.status, self.code, f"{filename or 'the file'}: {reason}")


class NotAudio(AudioError):
    """The bytes are not an audio container we read (or hold no audio stream)."""

    status, code = 415, "unsupported_media_type"


class UnsupportedCodec(AudioError):
    """A known container whose audio codec this build cannot decode."""

    status, code = 415, "unsupported_codec"


class AudioTooLarge(AudioError):
    """Over the upload size cap."""

    status, code = 413, "file_too_large"


class AudioTooLong(AudioError):
    """Over the duration cap."""

    status, code = 413, "audio_too_long"


class EmptyAudio(AudioError):
    """Zero bytes, or a container with no samples in it."""

    status, code = 422, "empty_audio"


class CorruptAudio(AudioError):
    """Recognised, but broken: truncated, garbled, unreadable."""

    status, code = 422, "corrupt_audio"
