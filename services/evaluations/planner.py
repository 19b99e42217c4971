"""The planner's I/O half: fetch what an evaluation names, hand it to the pure checks.

Templates (by version), the org's provider key, model routes and the similarity embedder
are looked up here; every check is in ``prompts.evaluation_plan``. The order is the API's:
bounds (422) before the template (404), versions, evaluators and rendering (422) before
the models (400), so the first mistake a request makes is the one it is told.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from core.errors import ApiError
from prompts import evaluation_plan as ep
from prompts.defaults import apply_template_defaults
from providers.embeddings import EmbeddingRegistry, EmbeddingSpec, UnknownEmbeddingModel
from services.metering import MeteringGate
from services.prompt_templates import PromptTemplates, ResolvedTemplate


class EvaluationPlanner:
    """Checks an evaluation of an org's template and resolves its versions and models."""

    def __init__(
        self,
        *,
        templates: PromptTemplates,
        gate: MeteringGate,
        embeddings: EmbeddingRegistry,
    ) -> None:
        self._templates = templates
        self._gate = gate
        self._embeddings = embeddings

    async def plan(self, org_id: str, name: str, draft: ep.EvaluationDraft) -> ep.Plan:
        """Everything checked before any call: 404/422/400 naming what is wrong."""
        ep.check_bounds(draft)
        view, _ = await self._templates.get(org_id, name)
        templates = await self._versions(org_id, name, draft, view.latest_version)
        specs = ep.evaluators_of(draft)
        ep.check_expected(specs, draft.dataset)
        rendered = ep.render_all(templates, draft.dataset)
        targets = []
        for template in templates:
            params = apply_template_defaults(
                template, {**draft.params, "model": draft.model or None}
            )
            route = await self._gate.resolve(org_id, params.pop("model", None))
            targets.append(ep.Target(version=template.version, route=route, params=params))
        judge = next((s for s in specs if s.name == "judge"), None)
        judge_route = await self._gate.resolve(org_id, judge.model) if judge else None
        org_key = await self._gate.org_key(org_id)  # the similarity evaluator's embedder
        if judge_route is not None:
            specs = ep.with_judge_model(specs, judge_route.name)
        similarity = next((s for s in specs if s.name == "similarity"), None)
        embedder: tuple[EmbeddingSpec, Embeddings] | None = None
        if similarity is not None:
            try:
                embedder = (
                    self._embeddings.spec(similarity.embedding_model, org_key=org_key),
                    self._embeddings.embeddings(similarity.embedding_model, org_key=org_key),
                )
            except UnknownEmbeddingModel as exc:
                raise ApiError(400, "unknown_embedding_model", str(exc)) from exc
        return ep.Plan(
            name=templates[0].name,
            org_key=org_key,
            draft=draft,
            targets=targets,
            evaluators=specs,
            rendered=rendered,
            judge=judge_route,
            similarity=embedder,
        )

    async def _versions(
        self, org_id: str, name: str, draft: ep.EvaluationDraft, latest: int
    ) -> list[ResolvedTemplate]:
        """The requested versions (422 ``unknown_versions`` naming all that are missing)."""
        templates: list[ResolvedTemplate] = []
        missing: list[int] = []
        for version in ep.requested_versions(draft, latest):
            try:
                templates.append(await self._templates.resolve(org_id, name, version=version))
            except ApiError as exc:
                if exc.code != "version_not_found":
                    raise
                missing.append(version)
        ep.check_versions_found(name, missing, latest)
        return templates
