"""``langgraph.json`` points at importable graphs and the app."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph

ROOT = Path(__file__).resolve().parents[2]


def load(target: str) -> object:
    path, _, attribute = target.partition(":")
    spec = importlib.util.spec_from_file_location(f"lg_{attribute}", ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def test_graphs_load() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["graphs"]
    for target in config["graphs"].values():
        assert isinstance(load(target), CompiledStateGraph)
