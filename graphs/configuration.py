"""The graphs' per-call configuration: the model-call settings of ``chains.configuration``.

Kept here so a graph reads its configuration where the LangGraph templates put it; the
definitions live in ``chains`` because the stateless chains use them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from langchain_core.runnables import RunnableConfig

from chains.configuration import ChatConfigurable, ChatConfiguration, LlmFactory

__all__ = ["ChatConfigurable", "ChatConfiguration", "LlmFactory", "ServerKeys", "server_owned"]

ServerKeys = Mapping[str, Any]
"""``configurable`` keys a graph compiled for one run always sees (LangGraph's server)."""


def server_owned(config: RunnableConfig, keys: ServerKeys | None) -> RunnableConfig:
    """``config`` with the server's ``configurable`` keys written last.

    Under LangGraph's server the run's config comes from the client and is merged over
    whatever the graph was bound with, so a graph compiled for one run takes its identity,
    model route and cap from ``keys``, in each node, where no client value can win.
    """
    if not keys:
        return config
    configurable = {**(config.get("configurable") or {}), **keys}
    return cast(RunnableConfig, {**config, "configurable": configurable})
