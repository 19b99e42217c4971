"""LangGraph state graphs.

Each graph lives in its own folder (state, graph) and is built by a ``build_*`` factory
that takes its model factory, so tests and the app inject theirs.
"""
