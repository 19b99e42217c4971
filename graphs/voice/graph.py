"""Voice chat: transcribe → the chat graph (with memory) → synthesize.

``transcribe`` turns the question's audio into text (or takes the given ``transcript``);
``chat`` runs one turn of the chat graph on the thread in ``configurable.thread_id``, as a
run of its own (root namespace), so the turn lands in the same checkpoint as the turns of
``/api/chat/completions`` and ``/runnables/chat``; ``synthesize`` speaks the answer. The
speech calls come from the injected :data:`~graphs.voice.speech.SpeechFactory` (the service
binds them to the caller), the chat graph is injected too: nothing here opens a network
connection at import.

Streaming: with ``stream_mode="custom"`` the run emits ``{"type": "token", "text"}`` for
each piece of the answer as the model produces it, then ``{"type": "audio", "data",
"content_type"}`` per audio chunk, or one ``{"type": "audio_error", "code", "message"}``.
A synthesis that cannot start (no provider, unknown voice) is not a failed turn: the
answer is already in the thread, so the output carries ``audio_error`` instead of audio.
"""

from __future__ import annotations

import base64
import uuid
import warnings
from typing import Any

from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from core.errors import ApiError
from graphs.configuration import ChatConfigurable
from graphs.voice.speech import SpeechFactory
from graphs.voice.state import VoiceInput, VoiceOutput, VoiceState

MESSAGE_ID = "voice_message_id"
"""``configurable`` key: the id to give the question's message (so a caller can take it back)."""
STREAMED_AUDIO = "voice_streamed_audio"
"""``configurable`` key: True when the caller reads the audio from the stream (not kept in
the output, which would hold the whole clip twice)."""
_PREGEL_KEYS = ("checkpoint_ns", "checkpoint_id", "checkpoint_map")


def build_voice_graph(*, chat: Runnable, speech: SpeechFactory) -> CompiledStateGraph:
    """Compile the voice graph around the chat graph (no checkpointer of its own)."""

    async def transcribe(state: VoiceState, config: RunnableConfig) -> dict[str, Any]:
        """The question as text: the given transcript, or the audio transcribed."""
        text = (state.get("transcript") or "").strip()
        language = state.get("language")
        if not text and state.get("audio"):
            heard = await speech(config).transcribe(
                base64.b64decode(state["audio"] or ""), language=language
            )
            text, language = heard.text.strip(), language or heard.language
        if not text:
            release = (config.get("configurable") or {}).get("release_hold")
            if callable(release):
                release()  # no model call follows
            raise ApiError(422, "no_speech", "no speech was heard in the audio")
        return {"transcript": text, "language": language, "audio": None}

    async def answer(state: VoiceState, config: RunnableConfig) -> dict[str, Any]:
        """One turn of the chat thread; the answer's pieces are streamed as they come."""
        configurable = config.get("configurable") or {}
        question = HumanMessage(
            content=state["transcript"] or "",
            id=configurable.get(MESSAGE_ID) or str(uuid.uuid4()),
        )
        write = get_stream_writer()
        final: dict[str, Any] = {}
        async for mode, item in chat.astream(
            {"messages": [question]}, _own_run(config), stream_mode=["messages", "values"]
        ):
            if mode == "values":
                final = item
                continue
            chunk, _meta = item
            if isinstance(chunk, AIMessageChunk) and chunk.text:
                write({"type": "token", "text": chunk.text})
        messages = final.get("messages") or []
        text = messages[-1].text if messages and messages[-1].type == "ai" else ""
        thread = (config.get("metadata") or {}).get("thread_id")
        return {"answer": text, "thread_id": thread}

    async def synthesize(state: VoiceState, config: RunnableConfig) -> dict[str, Any]:
        """The answer spoken, or why not (the turn stands either way)."""
        text = state.get("answer") or ""
        if not state.get("speak", True) or not text.strip():
            return {"audio": None, "audio_format": None, "audio_error": None}
        write = get_stream_writer()
        keep = not (config.get("configurable") or {}).get(STREAMED_AUDIO)
        try:
            spoken = await speech(config).synthesize(
                text,
                voice=state.get("voice"),
                language=state.get("language"),
                audio_format=state.get("format") or "mp3",
            )
        except ApiError as exc:
            error = {"code": exc.code, "message": exc.message}
            write({"type": "audio_error", **error})
            return {"audio": None, "audio_format": None, "audio_error": error}
        kept: list[bytes] = []
        async for data in spoken.chunks:
            write({"type": "audio", "data": data, "content_type": spoken.content_type})
            if keep:
                kept.append(data)
        audio = base64.b64encode(b"".join(kept)).decode() if keep else None
        return {"audio": audio, "audio_format": spoken.content_type, "audio_error": None}

    with warnings.catch_warnings():
        # `config_schema` is deprecated since LangGraph 1.0, but LangServe only forwards
        # RunnableConfig and reads the configurable keys (thread_id...) from here.
        warnings.simplefilter("ignore")
        builder = StateGraph(  # type: ignore[call-arg]
            VoiceState,
            input_schema=VoiceInput,
            output_schema=VoiceOutput,
            config_schema=ChatConfigurable,
        )
    builder.add_node("transcribe", transcribe)
    builder.add_node("chat", answer)
    builder.add_node("synthesize", synthesize)
    builder.add_edge(START, "transcribe")
    builder.add_edge("transcribe", "chat")
    builder.add_edge("chat", "synthesize")
    builder.add_edge("synthesize", END)
    graph = builder.compile()
    graph.name = "voice"
    return graph


def _own_run(config: RunnableConfig) -> RunnableConfig:
    """The node's config as a run of its own: the thread's root checkpoint, not a subgraph's.

    Called inside a node, a compiled graph would store its state under the node's
    namespace (and the parent's checkpointer); dropping LangGraph's internal keys makes it
    read and write the thread's own checkpoint, as every other chat turn does. The
    callbacks (accounting, tracing) stay.
    """
    configurable = {
        key: value
        for key, value in (config.get("configurable") or {}).items()
        if not key.startswith("__pregel_") and key not in _PREGEL_KEYS
    }
    metadata = {
        key: value
        for key, value in (config.get("metadata") or {}).items()
        if not key.startswith("langgraph_") and key not in _PREGEL_KEYS
    }
    own: dict[str, Any] = {
        "configurable": configurable,
        "metadata": metadata,
        "callbacks": config.get("callbacks"),
        "tags": list(config.get("tags") or []),
    }
    return RunnableConfig(**own)  # type: ignore[typeddict-item]
