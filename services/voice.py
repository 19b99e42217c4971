"""Voice chat for the websocket and LangServe: the voice graph, wired to speech and threads.

:func:`voice_speech` is the graph's speech port: it binds ``SpeechService``'s public calls
to the run's caller and usage route (server-written ``configurable`` keys), so the speech
parts of a run are usage events of that route (``runnables.voice``, ``speech.stream``)
with the same limits and keys as the REST routes. :class:`VoiceChat` runs one spoken turn
of a thread for the websocket (``WS /api/speech/stream`` in chat mode): the thread is held
like a chat completion's turn (ownership, limits, one turn at a time, rollback), and the
run's events come out as they happen: the answer's tokens, then the audio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from accounting.events import CallContext
from auth.tokens import Principal
from core.request_id import current_request_id
from graphs.voice.graph import MESSAGE_ID, STREAMED_AUDIO
from graphs.voice.speech import SpeechFactory, SpokenAudio
from providers.errors import upstream_errors
from providers.speech.types import AudioFormat, Transcript
from services.gateway_types import ChatMessage, ChatRequest
from services.graph_stream import TokenPump
from services.metering import MeteringGate
from services.speech import SpeechService, SynthesisOptions, TranscribeOptions
from services.thread_chat import ThreadChat

VOICE_ROUTE = "runnables.voice"


@dataclass(frozen=True, slots=True)
class _CallerSpeech:
    """Speech calls for one caller, accounted under one usage route."""

    speech: SpeechService
    principal: Principal
    route: str

    async def transcribe(self, audio: bytes, *, language: str | None) -> Transcript:
        """The question transcribed (the default model; limits and usage as the REST route)."""
        options = TranscribeOptions(language=language)
        return await self.speech.transcribe(
            self.principal, audio, "question", options, route=self.route
        )

    async def synthesize(
        self, text: str, *, voice: str | None, language: str | None, audio_format: str
    ) -> SpokenAudio:
        """The answer's synthesis, started."""
        fmt: AudioFormat = audio_format  # type: ignore[assignment]  # validated by the input
        options = SynthesisOptions(text=text, voice=voice, language=language, format=fmt)
        return await self.speech.synthesize(self.principal, options, route=self.route)


def voice_speech(speech: Callable[[], SpeechService]) -> SpeechFactory:
    """The voice graph's speech port (``speech`` is looked up per run: built in the lifespan)."""

    def bound(config: RunnableConfig) -> _CallerSpeech:
        configurable = config.get("configurable") or {}
        principal = Principal(org_id=configurable["org_id"], user_id=configurable["user_id"])
        return _CallerSpeech(speech(), principal, configurable.get("route") or VOICE_ROUTE)

    return bound


@dataclass(frozen=True, slots=True)
class SpokenTurn:
    """What a websocket client asked for its turn."""

    thread_id: str
    transcript: str
    language: str | None = None
    voice: str | None = None
    audio_format: AudioFormat = "pcm"
    speak: bool = True


class VoiceChat:
    """One spoken turn of a chat thread, streamed (the websocket's chat mode)."""

    def __init__(
        self, *, graph: CompiledStateGraph, threads: ThreadChat, gate: MeteringGate
    ) -> None:
        self._graph = graph
        self._threads = threads
        self._gate = gate

    async def turn(
        self, principal: Principal, spoken: SpokenTurn, *, flow: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The turn's events: ``token``, then ``audio`` chunks or one ``audio_error``.

        Errors before the answer (thread busy or not the caller's, over a limit, the model
        failing) raise from the iteration; the turn is then taken back. Once the answer is
        in the thread it stays, even if the listener leaves during the audio.
        """
        request = ChatRequest(
            messages=[ChatMessage(role="user", content=spoken.transcript)],
            thread_id=spoken.thread_id,
        )
        route = await self._gate.resolve(principal.org_id, None)
        context = CallContext.for_principal(
            principal, flow, request_id=current_request_id(), thread_id=spoken.thread_id
        )
        async with self._threads.turn(principal, request, route, context) as turn:
            config = RunnableConfig(**turn.config)
            config["configurable"] = {
                **(turn.config.get("configurable") or {}),
                MESSAGE_ID: turn.message_ids[0],
                STREAMED_AUDIO: True,
            }
            inputs = {
                "transcript": spoken.transcript,
                "language": spoken.language,
                "voice": spoken.voice,
                "format": spoken.audio_format,
                "speak": spoken.speak,
            }
            pump = TokenPump(self._graph, inputs, config, stream_mode=["custom", "updates"])
            try:
                while (item := await _next(pump, route.upstream.provider)) is not None:
                    mode, payload = item
                    if mode == "updates":
                        if "chat" in payload:
                            turn.keep()  # the answer is in the thread
                        continue
                    yield payload
            finally:
                await pump.cancel()


async def _next(pump: TokenPump, provider: str) -> Any:
    """The run's next item; the model provider's failures as the usual API errors."""
    with upstream_errors(provider):
        return await pump.next()
