"""The OpenAI Responses API, mapped onto the chat path (see ``service``)."""
