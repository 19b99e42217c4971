"""The voice graph with a fake chat model and a fake speech port: the thread, the stream, errors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from core.errors import ApiError
from graphs.chat.graph import build_chat_graph
from graphs.voice.graph import MESSAGE_ID, build_voice_graph
from providers.speech.types import Transcript


@dataclass
class Spoken:
    content_type: str
    chunks: AsyncIterator[bytes]


@dataclass
class FakeSpeech:
    heard: str = "what is on today"
    speakable: bool = True
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def transcribe(self, audio: bytes, *, language: str | None) -> Transcript:
        self.calls.append(("transcribe", audio))
        return Transcript(text=self.heard, language="en", duration_s=1.0)

    async def synthesize(
        self, text: str, *, voice: str | None, language: str | None, audio_format: str
    ) -> Spoken:
        self.calls.append(("synthesize", (text, voice, language, audio_format)))
        if not self.speakable:
            raise ApiError(422, "provider_unavailable", "nobody can speak")

        async def chunks() -> AsyncIterator[bytes]:
            for piece in (b"RIFF", b"-audio-", text.encode()):
                yield piece

        return Spoken("audio/wav", chunks())


def graphs(speech: FakeSpeech, *answers: str) -> tuple[Any, Any]:
    replies = iter([AIMessage(content=a) for a in answers])
    chat = build_chat_graph(llm_factory=lambda _model: GenericFakeChatModel(messages=replies))
    chat.checkpointer = InMemorySaver()
    return chat, build_voice_graph(chat=chat, speech=lambda _config: speech)


def config(thread: str, **extra: Any) -> RunnableConfig:
    return {
        "configurable": {"thread_id": f"org-a/{thread}", **extra},
        "metadata": {"thread_id": thread},
    }


async def test_audio_in_answer_in_the_threads_own_checkpoint_audio_out() -> None:
    speech = FakeSpeech()
    chat, voice = graphs(speech, "the standup at ten", "nothing else")
    question = base64.b64encode(b"wav bytes").decode()
    out = await voice.ainvoke(
        {"audio": question, "format": "wav"}, config("t1", **{MESSAGE_ID: "q1"})
    )
    assert out["transcript"] == "what is on today" and out["answer"] == "the standup at ten"
    assert base64.b64decode(out["audio"]) == b"RIFF-audio-the standup at ten"
    assert out["audio_format"] == "audio/wav" and out["thread_id"] == "t1"
    assert speech.calls[0] == ("transcribe", b"wav bytes")
    # The turn is in the thread's root checkpoint (what /api/chat/completions reads).
    state = await chat.aget_state({"configurable": {"thread_id": "org-a/t1"}})
    first = state.values["messages"][0]
    assert (first.type, first.text, first.id) == ("human", "what is on today", "q1")
    assert [m.text for m in state.values["messages"]] == ["what is on today", "the standup at ten"]
    await voice.ainvoke({"transcript": "anything else?", "speak": False}, config("t1"))
    state = await chat.aget_state({"configurable": {"thread_id": "org-a/t1"}})
    assert [m.text for m in state.values["messages"]][-2:] == ["anything else?", "nothing else"]


async def test_the_stream_gives_tokens_then_audio_and_a_voiceless_answer_stands() -> None:
    speech = FakeSpeech(speakable=False)
    chat, voice = graphs(speech, "two words")
    events = [
        event
        async for event in voice.astream(
            {"transcript": "hello"}, config("t2"), stream_mode="custom"
        )
    ]
    assert [e["type"] for e in events] == ["token", "token", "token", "audio_error"]
    assert "".join(e["text"] for e in events if e["type"] == "token") == "two words"
    assert events[-1]["code"] == "provider_unavailable"
    state = await chat.aget_state({"configurable": {"thread_id": "org-a/t2"}})
    assert [m.text for m in state.values["messages"]] == ["hello", "two words"]


async def test_silence_is_no_speech_and_releases_the_hold() -> None:
    speech = FakeSpeech(heard="  ")
    released: list[bool] = []
    _chat, voice = graphs(speech, "unused")
    question = base64.b64encode(b"quiet").decode()
    with pytest.raises(ApiError) as refused:
        await voice.ainvoke(
            {"audio": question}, config("t3", release_hold=lambda: released.append(True))
        )
    assert refused.value.code == "no_speech" and released == [True]
