"""Prompt evaluations by job: planner, store, runner, report.

``services.prompt_evaluations.PromptEvaluations`` is the facade the routes use; the pure
checks and rendering are ``prompts.evaluation_plan``.
"""
