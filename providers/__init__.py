"""Model providers: who serves a model name, and the clients that call them.

Every provider speaks the OpenAI wire protocol (OpenAI itself, and the embedded
llama.cpp server), so one ``ChatOpenAI`` code path serves the runnables and one lean
relay serves the OpenAI-compatible REST routes.
"""
