"""``langgraph.json`` points at what LangGraph's server loads, loaded the way it loads them.

The server imports files by path under names of its own (the app as ``user_router_module``,
never put in ``sys.modules``) and merges the app's lifespan with its own, which it refuses
for an app with startup hooks. ``tests/api/test_langgraph_server.py`` runs the real thing.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from langgraph_sdk import Auth

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "langgraph.json").read_text())


def load(target: str, module_name: str) -> object:
    path, _, attribute = target.partition(":")
    spec = importlib.util.spec_from_file_location(module_name, ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def test_graphs_are_factories_of_the_config_and_runtime() -> None:
    assert set(CONFIG["graphs"]) == {"chat", "rag"}
    for graph_id, target in CONFIG["graphs"].items():
        factory = load(target, f"lg_{graph_id}")
        assert callable(factory)
        assert list(inspect.signature(factory).parameters) == ["config", "runtime"]


def test_auth_is_the_services_handler() -> None:
    auth = load(CONFIG["auth"]["path"], "lg_auth")
    assert isinstance(auth, Auth)
    assert auth._authenticate_handler is not None
    # Studio connects with the service's token too, never with LangGraph's bypass.
    assert CONFIG["auth"]["disable_studio_auth"] is True


def test_app_loads_as_langgraph_loads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AHC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AHC_JWT_SECRET", "unit-test-secret-unit-test-secret-unit!")
    app = load(CONFIG["http"]["app"], "user_router_module")
    assert isinstance(app, FastAPI)
    # LangGraph merges lifespans only for apps without startup/shutdown hooks.
    assert not app.router.on_startup and not app.router.on_shutdown
    paths = set(app.openapi()["paths"])
    assert {"/healthz", "/runnables/chat/invoke", "/runnables/rag/stream"} <= paths
