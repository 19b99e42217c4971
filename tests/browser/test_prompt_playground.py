"""The prompt playground in a real browser: an org's template picked in the config form, run.

The API tests check ``/runnables/prompt`` with RemoteRunnable; only a browser shows that the
playground's form can render and submit its config schema (it once failed on nullable
fields and showed a blank page).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.test_playground import ANSWER, OUTPUT_TIMEOUT_MS, _end_run, _output_box

if TYPE_CHECKING:
    from tests.browser.conftest import PlaygroundService

pytestmark = pytest.mark.browser


def test_prompt_playground_runs_an_org_template(
    playground_service: PlaygroundService, page: Page, tmp_path: Path
) -> None:
    created = httpx.post(
        f"{playground_service.url}/api/prompt-templates",
        headers={"Authorization": f"Bearer {playground_service.token}"},
        json={
            "name": "browser-greeter",
            "messages": [{"role": "user", "content": "Say hello to the team in one sentence."}],
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    failed: list[str] = []
    page_errors: list[str] = []

    def on_response(response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            failed.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(f"{playground_service.playground('prompt')}?token={playground_service.token}")

    template = page.get_by_label("Template", exact=True)
    expect(template).to_have_value("summarize")  # the form renders, with the schema's defaults
    template.fill("browser-greeter")
    expect(page.get_by_text("Validation Errors")).to_have_count(0)
    start = page.get_by_role("button", name="Start", exact=True)
    expect(start).to_be_enabled()
    with page.expect_response(lambda r: r.url.endswith("/runnables/prompt/stream_log")) as run:
        start.click()
    assert run.value.status == 200
    expect(_output_box(page)).to_have_text(ANSWER, timeout=OUTPUT_TIMEOUT_MS)
    _end_run(page)
    page.screenshot(path=tmp_path / "prompt-playground.png", full_page=True)
    expect(page.locator(".text-red-700")).to_have_count(0)
    assert not failed, failed
    assert not page_errors, page_errors
