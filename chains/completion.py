"""The stateless completion chain: ``prompt | model | parser``.

The model is chosen per call from ``configurable`` (the server's resolved
``model_route``, else ``model``; with ``temperature`` and ``max_tokens``), so one chain
serves every configured model. Served at
``/runnables/completion``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from pydantic import BaseModel, Field

from chains.configuration import ChatConfiguration, LlmFactory

COMPLETION_PROMPT = ChatPromptTemplate.from_messages([("system", "{system}"), ("human", "{input}")])


class CompletionInput(BaseModel):
    """Input of the completion chain."""

    input: str = Field(description="The user's message.", min_length=1)
    system: str = Field(default="You are a helpful assistant.", description="System instructions.")


def select_model(llm_factory: LlmFactory) -> Runnable:
    """A runnable that forwards to the model named in ``configurable`` (with its params)."""

    def route(prompt: Any, config: RunnableConfig) -> Runnable:
        configuration = ChatConfiguration.from_runnable_config(config)
        llm = configuration.chat_model(llm_factory)
        params = configuration.call_params()
        return llm.bind(**params) if params else llm

    return RunnableLambda(route, name="select_model")


def build_completion_chain(llm_factory: LlmFactory) -> Runnable:
    """``prompt | model | StrOutputParser`` with typed input and output."""
    chain = COMPLETION_PROMPT | select_model(llm_factory) | StrOutputParser()
    return chain.with_types(
        input_type=CompletionInput,  # type: ignore[arg-type]
        output_type=str,
    ).with_config(run_name="completion")
