"""Prompt templates: syntax checks, building and rendering, starters, SQL storage.

``prompts.render`` turns stored messages into a LangChain ``ChatPromptTemplate`` and renders
it; ``prompts.syntax`` refuses template fields that could reach into Python objects;
``prompts.starters`` are the system-wide templates; ``prompts.store`` is the SQL side. The
use cases (versions, labels, resolution by name) are in ``services.prompt_templates``.
"""
