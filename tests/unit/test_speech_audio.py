"""Audio uploads: recognised by their bytes, decoded with PyAV, refused with the right error."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from providers.speech.types import Segment, Transcript
from providers.speech.whisper_files import packaged_model_dir
from speech.decode import SAMPLE_RATE, decode_audio
from speech.errors import (
    AudioTooLong,
    CorruptAudio,
    EmptyAudio,
    NotAudio,
    UnsupportedCodec,
)
from speech.language import text_language
from speech.pricing import SpeechPrices
from speech.render import as_json, as_openai, as_subtitles
from speech.sniff import sniff_audio
from speech.text import split_for_synthesis
from speech.wav import fix_wav_sizes, wav_header
from tests.support.audio import ENCODINGS, clip_wav, encoded_clip, silence_wav


@pytest.mark.parametrize("kind", ["wav", *ENCODINGS])
def test_every_supported_format_is_recognised_and_decoded(kind: str) -> None:
    data = clip_wav() if kind == "wav" else encoded_clip(kind)
    expected = {"m4a": "mp4"}.get(kind, kind)
    assert sniff_audio(data[:16]) == expected
    audio = decode_audio(data, filename=f"clip.{kind}", max_seconds=60)
    assert audio.container == expected
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 3.9 < audio.duration_s < 4.3  # codec padding aside, the clip's 4.05 s
    assert float(np.abs(audio.samples).max()) > 0.05  # real signal, not silence


def test_the_name_does_not_decide() -> None:
    audio = decode_audio(encoded_clip("flac"), filename="notes.mp3", max_seconds=60)
    assert audio.container == "flac"
    with pytest.raises(NotAudio):
        decode_audio(b"just some text, not audio at all", filename="notes.wav", max_seconds=60)


def test_sniffing_magic_numbers() -> None:
    assert sniff_audio(b"\xff\xfb\x90\x64" + b"\x00" * 12) == "mp3"  # bare MPEG frame, no ID3
    assert sniff_audio(b"\xff\xf1\x50\x80" + b"\x00" * 12) is None  # ADTS AAC: not offered
    assert sniff_audio(b"%PDF-1.7\n" + b"\x00" * 8) is None
    assert sniff_audio(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8) is None


def test_bad_uploads_name_the_file_and_say_why() -> None:
    wav = clip_wav()
    cases: list[tuple[bytes, type[Exception], int, str]] = [
        (b"", EmptyAudio, 422, "empty_audio"),
        (wav[:44], EmptyAudio, 422, "empty_audio"),  # a header and no samples
        (b"RIFF\x00\x00\x00\x00WAVEjunk" * 4, CorruptAudio, 422, "corrupt_audio"),
        (b"OggS" + b"\x00" * 200, CorruptAudio, 422, "corrupt_audio"),
        (b"ID3" + b"\x01" * 300, CorruptAudio, 422, "corrupt_audio"),
        (b"<html>not audio</html>", NotAudio, 415, "unsupported_media_type"),
    ]
    for data, kind, status, code in cases:
        with pytest.raises(kind) as caught:
            decode_audio(data, filename="upload-7.wav", max_seconds=60)
        assert caught.value.status_code == status and caught.value.code == code
        assert caught.value.message.startswith("upload-7.wav: ")


def test_an_unknown_codec_is_415() -> None:
    data = bytearray(clip_wav())
    data[20:22] = struct.pack("<H", 0x7777)  # the WAV format tag: no such codec
    with pytest.raises(UnsupportedCodec) as caught:
        decode_audio(bytes(data), filename="odd.wav", max_seconds=60)
    assert caught.value.status_code == 415 and caught.value.code == "unsupported_codec"


def test_a_container_without_audio_is_415() -> None:
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as target:
        stream = target.add_stream("mpeg4", rate=5)  # type: ignore[call-overload]
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            target.mux(packet)
    with pytest.raises(NotAudio, match="no audio stream"):
        decode_audio(buffer.getvalue(), filename="video.mp4", max_seconds=60)


def test_duration_cap() -> None:
    with pytest.raises(AudioTooLong) as caught:
        decode_audio(clip_wav(), filename="long.wav", max_seconds=2)
    assert caught.value.status_code == 413 and "at most 2 s" in caught.value.message
    with pytest.raises(AudioTooLong):
        decode_audio(silence_wav(5), filename="five.wav", max_seconds=3)


def test_silence_decodes_to_zeros() -> None:
    audio = decode_audio(silence_wav(1.5), filename="quiet.wav", max_seconds=60)
    assert audio.duration_s == pytest.approx(1.5) and not audio.samples.any()
    assert len(audio.samples) == int(1.5 * SAMPLE_RATE)


TRANSCRIPT = Transcript(
    text="Hello there. Second part.",
    language="en",
    duration_s=3725.5,
    segments=(Segment(0.0, 1.25, "Hello there."), Segment(3600.5, 3725.5, "Second part.")),
)


def test_subtitles_and_json_shapes() -> None:
    assert as_subtitles(TRANSCRIPT, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n"
        "2\n01:00:00,500 --> 01:02:05,500\nSecond part.\n"
    )
    assert as_subtitles(TRANSCRIPT, "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n"
        "01:00:00.500 --> 01:02:05.500\nSecond part.\n"
    )
    assert as_json(TRANSCRIPT, verbose=False) == {
        "text": "Hello there. Second part.",
        "language": "en",
        "duration_s": 3725.5,
    }
    verbose = as_json(TRANSCRIPT, verbose=True)
    assert verbose["segments"][1] == {
        "id": 1,
        "start": 3600.5,
        "end": 3725.5,
        "text": "Second part.",
    }
    assert as_openai(TRANSCRIPT, verbose=False) == {"text": "Hello there. Second part."}
    assert as_openai(TRANSCRIPT, verbose=True)["duration"] == 3725.5
    silent = Transcript(text="", language="en", duration_s=1.0)
    assert as_subtitles(silent, "srt") == "" and as_subtitles(silent, "vtt") == "WEBVTT\n\n"


def test_streamed_wav_header_is_fixed_when_the_length_is_known() -> None:
    pcm = b"\x01\x00" * 100
    fixed = fix_wav_sizes(wav_header(24_000) + pcm)
    assert struct.unpack("<I", fixed[4:8])[0] == len(fixed) - 8
    assert struct.unpack("<I", fixed[40:44])[0] == len(pcm)
    assert fix_wav_sizes(b"ID3 not a wav") == b"ID3 not a wav"


def test_text_language_and_prices() -> None:
    assert text_language("회의록을 보내 주세요", None) == "ko"
    assert text_language("Send the notes", None) is None
    assert text_language("Send the notes", "EN-us") == "en"
    prices = SpeechPrices({"eleven_multilingual_v2": 180.0})
    assert float(prices.transcription("whisper-1", 90)) == pytest.approx(0.009)
    assert prices.transcription("whisper-base", 90) == 0
    assert float(prices.synthesis("tts-1", 1000)) == pytest.approx(0.015)
    assert float(prices.synthesis("eleven_multilingual_v2", 1000)) == pytest.approx(0.18)


def test_packaged_model_is_joined_once(tmp_path: Path) -> None:
    folder = packaged_model_dir(tmp_path)
    model = folder / "model.bin"
    assert model.stat().st_size == 145_217_532
    assert {p.name for p in folder.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    stamp = model.stat().st_mtime_ns
    assert packaged_model_dir(tmp_path) == folder and model.stat().st_mtime_ns == stamp


def test_long_text_is_cut_at_sentence_ends_english_and_korean() -> None:
    assert split_for_synthesis("One. Two! Three? Four", 9) == ["One. Two!", "Three?", "Four"]
    korean = "회의를 시작하겠습니다 오늘 안건은 세 가지입니다. 먼저 예산을 보세요 다음은 일정이에요"
    assert split_for_synthesis(korean, 20) == [
        "회의를 시작하겠습니다",
        "오늘 안건은 세 가지입니다.",
        "먼저 예산을 보세요 다음은 일정이에요",
    ]
    assert split_for_synthesis("line one\nline two", 10) == ["line one", "line two"]
    assert split_for_synthesis("word " * 10, 12) == ["word word"] * 5  # no sentence end: spaces
    assert split_for_synthesis("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]  # last resort
    assert split_for_synthesis("  short  ", 10) == ["short"] and split_for_synthesis(" ", 5) == []
    text = " ".join(f"Sentence number {i} is here." for i in range(500))
    pieces = split_for_synthesis(text, 4096)
    assert all(len(p) <= 4096 for p in pieces) and len(pieces) == 4
    assert " ".join(pieces) == text and all(p.endswith(".") for p in pieces)


def test_pcm_buffer_joins_split_samples_and_resamples() -> None:
    from speech.pcm import PcmBuffer

    buffer = PcmBuffer(16_000)
    buffer.append(b"\x00\x40\x00")  # one sample and half of the next
    buffer.append(b"\xc0")
    assert buffer.size == 4 and buffer.samples().tolist() == [0.5, -0.5]
    tone = (np.sin(np.arange(48_000) / 48_000 * 2 * np.pi * 440) * 16_000).astype("<i2")
    high = PcmBuffer(48_000)
    high.append(tone.tobytes())
    assert high.seconds == 1.0 and len(high.samples()) == 16_000
    assert float(np.abs(high.samples()).max()) == pytest.approx(16_000 / 32_768, rel=0.01)
    with pytest.raises(ValueError, match="8000 to 48000"):
        PcmBuffer(96_000)
