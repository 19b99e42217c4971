"""The one error of the prompt package: a client mistake in a template or its variables.

It is an :class:`~core.errors.ApiError` (422 unless told otherwise), so every flow that
renders a template (REST, chat, RAG) answers it with the service's error shape unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.errors import ApiError


class PromptError(ApiError):
    """A template that cannot be stored, or variables it cannot be rendered with."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int = 422,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code, code, message, details=details)


def names(values: Iterable[str]) -> str:
    """``a, b, c`` (sorted): how messages name variables."""
    return ", ".join(sorted(values))
