"""Chat memory settings: trimming long threads and serializing a thread's turns."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChatMemorySettings(BaseModel):
    """Context windows per model and the thread turn lock."""

    context_windows: dict[str, int] = Field(
        default={
            "gpt-4o-mini": 128_000,
            "gpt-4o": 128_000,
            "gpt-4": 8_192,
            "gpt-3.5-turbo": 16_385,
        },
        description="Context window (tokens) per model, for trimming long threads.",
    )
    default_context_window: int = 8_192
    memory_reply_reserve_tokens: int = Field(
        default=512, description="Tokens kept free for the answer when max_tokens is not set."
    )
    thread_lock_wait_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a turn waits for the running turn of its thread (turns of one "
        "thread run one at a time, across instances with redis_url); then 409 thread_busy.",
    )
    thread_lock_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        description="Lease of a thread's turn lock in Redis: renewed while the turn runs, "
        "expires this long after its instance died.",
    )
