"""Tools and the SDK client the tool-calling tests share (stateless and thread memory)."""

from __future__ import annotations

import openai

from tests.support.service import RunningService

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ASK = [{"role": "user", "content": "weather in Paris?"}]


def sdk(service: RunningService) -> openai.OpenAI:
    """The official client against the service, no retries (a failure shows at once)."""
    return openai.OpenAI(base_url=service.api, api_key=service.token(), max_retries=0)
