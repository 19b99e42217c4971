"""A streamed chat completion re-told as the Responses API's typed server-sent events.

The chat path yields Chat Completions SSE (relayed, or replayed from the cache); this turns
it into ``response.created`` → ``response.in_progress`` → per output item
``response.output_item.added`` … ``response.output_item.done`` (text through
``response.content_part.added``, ``response.output_text.delta``/``.done`` and
``response.content_part.done``; a tool call through
``response.function_call_arguments.delta``/``.done``) → ``response.completed`` (or
``response.incomplete``, or ``response.failed`` when the upstream broke). Every event
carries ``sequence_number``, counting from 0, as the openai SDK's stream helper expects.

The text arrives first and the tool calls after it (as Chat Completions streams them), so
at most one output item is open at a time: a new one closes the one before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from services.responses import items as it
from services.responses.objects import ResponseShell

logger = logging.getLogger(__name__)

Finished = Callable[[dict[str, Any]], Awaitable[None]]
"""Called with the final response object (completed or incomplete) before its last event."""


class ResponseEvents:
    """The state of one streamed response: its items so far and the next sequence number."""

    def __init__(self, shell: ResponseShell) -> None:
        self.shell = shell
        self.output: list[dict[str, Any]] = []
        self._sequence = 0
        self._open: int | None = None  # output index of the item being streamed
        self._calls: dict[int, int] = {}  # chat tool-call index -> output index
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self._pieces: list[str] = []  # the open message's text so far
        self._delta_head = self._delta_middle = b""

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        body = self.shell.body(status="in_progress")
        return self._event("response.created", response=body) + self._event(
            "response.in_progress", response=body
        )

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        """The events of one ``chat.completion.chunk``."""
        out = b""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                out += self._text(text)
            for piece in delta.get("tool_calls") or []:
                out += self._call_piece(piece)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return out

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open is None or self.output[self._open]["type"] != "message":
            out += self._close()
            index = len(self.output)
            item = it.message_item("", item_id=it.new_id("msg"), status="in_progress")
            item["content"] = []
            self.output.append(item)
            self._open = index
            out += self._event("response.output_item.added", output_index=index, item=item)
            part = it.text_part("")
            item["content"].append(part)
            out += self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            self._pieces = []
            # Deltas differ only in their sequence number and text: spliced, not serialized.
            self._delta_head = b"event: response.output_text.delta\ndata: " + (
                b'{"type":"response.output_text.delta","sequence_number":'
            )
            self._delta_middle = b',"item_id":"%s","output_index":%d,"content_index":0,"delta":' % (
                item["id"].encode(),
                index,
            )
        self._pieces.append(text)
        sequence, self._sequence = self._sequence, self._sequence + 1
        return out + b"".join(
            (
                self._delta_head,
                b"%d" % sequence,
                self._delta_middle,
                orjson.dumps(text),
                b',"logprobs":[]}\n\n',
            )
        )

    def _call_piece(self, piece: dict[str, Any]) -> bytes:
        out = b""
        function = piece.get("function") or {}
        chat_index = int(piece.get("index") or 0)
        index = self._calls.get(chat_index)
        if index is None:
            out += self._close()
            index = len(self.output)
            item = it.call_item(
                item_id=it.new_id("fc"),
                call_id=str(piece.get("id") or it.new_id("call")),
                name=str(function.get("name") or ""),
                arguments="",
                status="in_progress",
            )
            self.output.append(item)
            self._calls[chat_index] = self._open = index
            out += self._event("response.output_item.added", output_index=index, item=item)
            function = {**function, "name": None}
        item = self.output[index]
        if function.get("name"):  # a provider that sends the name in pieces
            item["name"] += function["name"]
        if arguments := function.get("arguments"):
            item["arguments"] += arguments
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=arguments,
            )
        return out

    def _close(self) -> bytes:
        """Finish the open item (its ``.done`` events), if any."""
        index, self._open = self._open, None
        if index is None:
            return b""
        item = self.output[index]
        status = "incomplete" if self.finish_reason == "length" else "completed"
        item["status"] = status
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            part["text"] = "".join(self._pieces)  # one join, not a copy per delta
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            text = part["text"]
            out += self._event("response.output_text.done", **common, text=text, logprobs=[])
            out += self._event("response.content_part.done", **common, part=part)
        else:
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def finish(self) -> tuple[bytes, dict[str, Any]]:
        """Close what is open; the final events' start and the final response object."""
        out = self._close()
        if not self.output:  # an empty answer is still one (empty) message
            out += self._text_empty()
        status, incomplete = it.ending(self.finish_reason)
        body = self.shell.body(
            status=status, output=self.output, usage=it.usage(self.usage), incomplete=incomplete
        )
        return out, body

    def _text_empty(self) -> bytes:
        item = it.message_item("", item_id=it.new_id("msg"))
        self.output.append(item)
        index = len(self.output) - 1
        return self._event("response.output_item.added", output_index=index, item=item) + (
            self._event("response.output_item.done", output_index=index, item=item)
        )

    def final(self, body: dict[str, Any]) -> bytes:
        """``response.completed`` (or ``response.incomplete``)."""
        kind = "response.completed" if body["status"] == "completed" else "response.incomplete"
        return self._event(kind, response=body)

    def failed(self, message: str) -> bytes:
        """``response.failed``: the upstream broke off; the items so far are not final."""
        if self._open is not None and self.output[self._open]["type"] == "message":
            self.output[self._open]["content"][0]["text"] = "".join(self._pieces)
        self._open = None
        error = {"code": "server_error", "message": message}
        body = self.shell.body(status="failed", output=self.output, error=error)
        return self._event("response.failed", response=body)


async def translate(
    chat_events: AsyncIterator[bytes], shell: ResponseShell, finished: Finished
) -> AsyncIterator[bytes]:
    """The Responses events of a chat SSE stream; ``finished`` runs before the last event."""
    events = ResponseEvents(shell)
    yield events.start()
    buffer = b""
    try:
        async for raw in chat_events:
            buffer += raw
            *complete, buffer = buffer.split(b"\n\n")
            out = b""  # one write per upstream read, as the relay does
            for event in complete:
                data = _data(event)
                if data is None:
                    continue
                if data == b"[DONE]":
                    tail, body = events.finish()
                    try:
                        await finished(body)
                    except Exception:  # the answer exists, but continuing from it would 404
                        logger.exception("could not store response %s", body["id"])
                        yield out + tail + events.failed("the response could not be stored")
                        return
                    yield out + tail + events.final(body)
                    return
                chunk = orjson.loads(data)
                if isinstance(chunk.get("error"), dict):
                    message = str(chunk["error"].get("message") or "upstream error")
                    yield out + events.failed(message)
                    return
                out += events.chunk(chunk)
            if out:
                yield out
        yield events.failed("the upstream stream ended early")
    finally:
        if hasattr(chat_events, "aclose"):
            await chat_events.aclose()


def _data(event: bytes) -> bytes | None:
    """The ``data:`` of one SSE event (None for a comment or an empty event)."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # the usual event: one data line
    lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None
