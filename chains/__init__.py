"""LCEL runnables: prompts, model calls and the helpers they share (no web framework here)."""
