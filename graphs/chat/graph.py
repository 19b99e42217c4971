"""Chat with memory.

One node, ``call_model``: it trims the checkpointed conversation to the model's context
budget (see ``chains.trimming``), calls the model named in ``configurable.model`` (with
the turn's tools and response format bound, ``configurable.tool_params``) and appends the
answer, tool calls included: the client's tool results come in the next turn. The
checkpointer (SQLite or PostgreSQL) is attached by the service when it starts, keyed by
``configurable.thread_id``; the same graph object serves the REST routes and the LangServe
route ``/runnables/chat``. Under ``langgraph dev`` (``langgraph.json``) each run gets one
compiled with the caller's keys (``services.langgraph_server``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from chains.trimming import prompt_budget, trim_history
from graphs.chat.state import ChatInput, ChatState
from graphs.configuration import (
    ChatConfigurable,
    ChatConfiguration,
    LlmFactory,
    ServerKeys,
    server_owned,
)

if TYPE_CHECKING:
    pass

ContextWindow = Callable[[str | None], int]


def build_chat_graph(
    *,
    llm_factory: LlmFactory,
    context_window: ContextWindow = lambda _model: 8192,
    reply_reserve: int = 512,
    server_keys: ServerKeys | None = None,
) -> CompiledStateGraph:
    """Compile the chat graph (without a checkpointer: the service attaches its own).

    ``server_keys``: ``configurable`` keys that win over the run's (a graph compiled for
    one run under LangGraph's server, ``graphs.configuration.server_owned``).
    """

    async def call_model(state: ChatState, config: RunnableConfig) -> dict[str, list]:
        """Answer the conversation's last message."""
        if not state.get("messages"):
            # LangGraph's server does not validate the input schema: never call the model
            # with nothing to answer.
            raise ValueError(
                "the input has no message: send {'messages': [{'role': 'user', 'content': ...}]}"
            )
        config = server_owned(config, server_keys)
        configuration = ChatConfiguration.from_runnable_config(config)
        llm = configuration.chat_model(llm_factory)
        model_name = configuration.model or getattr(llm, "model_name", "") or ""
        budget = prompt_budget(
            context_window(configuration.model), configuration.max_tokens, reply_reserve
        )
        prompt = trim_history(state["messages"], budget=budget, model=model_name)
        params = configuration.call_params()
        model = llm.bind(**params) if params else llm
        response = await model.ainvoke(prompt, config)
        return {"messages": [response]}

    with warnings.catch_warnings():
        # Deprecated since LangGraph 1.0 in favour of `context_schema`, but LangServe only
        # forwards RunnableConfig and reads the configurable keys (thread_id...) from here.
        warnings.simplefilter("ignore")
        builder = StateGraph(  # type: ignore[call-arg]
            ChatState, input_schema=ChatInput, config_schema=ChatConfigurable
        )
    builder.add_node("call_model", call_model)
    builder.add_edge(START, "call_model")
    builder.add_edge("call_model", END)
    graph = builder.compile()
    graph.name = "chat"
    return graph
