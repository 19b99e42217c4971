"""Model names → upstreams, and the LangChain chat models that call them.

A model is addressed by name (``gpt-4o-mini``, ``local``...). The registry knows which
provider serves each name, answers an unknown name with a 400 listing the known ones,
and builds (once per name) the ``ChatOpenAI`` the runnables and graphs use. The
OpenAI-compatible REST path uses the same :class:`Upstream` with a lean relay client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_openai import ChatOpenAI

from core.config import Settings
from core.errors import ApiError


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where and how to call a provider over the OpenAI wire protocol."""

    provider: str
    base_url: str
    api_key: str = field(repr=False)  # never in a log line, trace or checkpoint
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A resolved model name: what to send upstream, and to whom."""

    name: str
    upstream_model: str
    upstream: Upstream


class ModelRegistry:
    """The configured models; the local provider's URL is attached once it has started."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._openai_models: list[str] = (
            list(settings.openai_models) if settings.openai_api_key is not None else []
        )
        self._local: Upstream | None = None
        if settings.local_model_base_url:
            self._local = Upstream(
                provider="local",
                base_url=settings.local_model_base_url.rstrip("/"),
                api_key="local",
            )
        self._chat_models: dict[str, ChatOpenAI] = {}
        self._http: Any = None

    # -- lifecycle ----------------------------------------------------------------
    def open(self) -> None:
        """Create the connection pool the chat models share (inside the app's event loop).

        LangChain's default pool is a process-wide cache bound to the first event loop that
        used it; one pool per app, closed with the app, keeps the models loop-safe. The
        transport is the SDK's aiohttp one (as for embeddings: less CPU per call than httpx's).
        """
        import openai

        self._http = openai.DefaultAioHttpClient(timeout=self._settings.upstream_timeout_seconds)
        self._chat_models.clear()

    async def aclose(self) -> None:
        """Close the chat models' connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._chat_models.clear()

    # -- configuration ------------------------------------------------------------
    def attach_local(self, *, base_url: str, api_key: str) -> None:
        """Serve ``local`` from this OpenAI-compatible server (started in the lifespan)."""
        self._local = Upstream(provider="local", base_url=base_url, api_key=api_key)
        self._chat_models.clear()

    @property
    def local_enabled(self) -> bool:
        """Whether the embedded model is part of the configuration."""
        return self._settings.local_model_enabled

    def names(self) -> list[str]:
        """Every model a client may name, the default first."""
        names = list(self._openai_models)
        if self.local_enabled:
            names.append(self._settings.local_model_name)
        default = self.default_model
        return [default, *(n for n in names if n != default)] if default in names else names

    @property
    def default_model(self) -> str:
        """The configured default, else the first OpenAI model with a key, else ``local``."""
        if self._settings.default_model:
            return self._settings.default_model
        if self._openai_models:
            return self._openai_models[0]
        return self._settings.local_model_name

    def owner(self, name: str) -> str:
        """Which provider serves ``name`` (for ``GET /api/models``)."""
        return "local" if name == self._settings.local_model_name else "openai"

    # -- resolution -----------------------------------------------------------------
    def resolve(self, name: str | None, *, org_key: str | None = None) -> ModelRoute:
        """Map a requested model name to its upstream, or raise a 400 naming the known ones.

        ``org_key``: the calling organization's own OpenAI key, used instead of the service's.
        """
        model = name or self.default_model
        if model in self._openai_models:
            settings = self._settings
            assert settings.openai_api_key is not None
            upstream = Upstream(
                provider="openai",
                base_url=settings.openai_base_url.rstrip("/"),
                api_key=org_key or settings.openai_api_key.get_secret_value(),
                organization=None if org_key else settings.openai_organization,
            )
            return ModelRoute(name=model, upstream_model=model, upstream=upstream)
        if self.local_enabled and model == self._settings.local_model_name:
            if self._local is None:
                raise ApiError(503, "model_unavailable", f"model '{model}' is still starting")
            return ModelRoute(name=model, upstream_model=model, upstream=self._local)
        known = ", ".join(self.names()) or "(none configured)"
        raise ApiError(400, "unknown_model", f"unknown model '{model}'; known models: {known}")

    def chat_model(self, model: ModelRoute | str | None = None) -> ChatOpenAI:
        """The LangChain chat model for a resolved route, else for a name with the service key.

        The graphs' and chains' model factory: a service run carries its route (resolved
        with the org's own key) in ``configurable.model_route``; a run without one
        (a unit test) names a model, served on the service's key.
        """
        route = model if isinstance(model, ModelRoute) else self.resolve(model)
        return self.chat_model_for(route)

    def chat_model_for(self, route: ModelRoute) -> ChatOpenAI:
        """The LangChain chat model calling ``route`` (cached per model and key)."""
        cache_key = f"{route.name}\x00{route.upstream.api_key}"
        model = self._chat_models.get(cache_key)
        if model is None:
            if len(self._chat_models) >= 256:  # bounded: many orgs' keys over time
                self._chat_models.pop(next(iter(self._chat_models)))
            model = self._build_chat_model(route)
            self._chat_models[cache_key] = model
        return model

    def _build_chat_model(self, route: ModelRoute) -> ChatOpenAI:
        settings = self._settings
        return ChatOpenAI(
            model=route.upstream_model,
            base_url=route.upstream.base_url,
            api_key=route.upstream.api_key,
            organization=route.upstream.organization,
            timeout=settings.upstream_timeout_seconds,
            max_retries=settings.upstream_max_retries,
            stream_usage=True,
            http_async_client=self._http,
        )
