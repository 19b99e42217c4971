"""The graphs' per-call configuration: the model-call settings of ``chains.configuration``.

Kept here so a graph reads its configuration where the LangGraph templates put it; the
definitions live in ``chains`` because the stateless chains use them too.
"""

from __future__ import annotations

from chains.configuration import ChatConfigurable, ChatConfiguration, LlmFactory

__all__ = ["ChatConfigurable", "ChatConfiguration", "LlmFactory"]
