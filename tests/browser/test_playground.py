"""The LangServe playground in a real browser: link with a token, cookie, a streamed run.

Unit tests cover the cookie middleware; only a browser shows that the React app, its
assets and its ``stream_log`` calls really work with the cookie alone (the app derives
its API URL from the page address, so the token must be gone from it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, Request, Response, expect

if TYPE_CHECKING:
    from tests.browser.conftest import PlaygroundService

pytestmark = pytest.mark.browser

COOKIE = "ahc_token"
OUTPUT_TIMEOUT_MS = 60_000
NATURAL_END_TIMEOUT_MS = 10_000
# Some text other than "...", the playground's placeholder until the first token arrives.
ANSWER = re.compile(r"^(?!\s*(?:\.\.\.)?\s*$)[\s\S]*\S")


def _output_box(page: Page) -> Locator:
    """The box under the "Output" heading, where the playground streams the answer."""
    heading = page.get_by_role("heading", name="Output", exact=True)
    return heading.locator("xpath=following-sibling::div[1]")


def _assert_error_body(response: Response | None, code: str) -> None:
    """A 401 with the service's one error shape."""
    assert response is not None
    assert response.status == 401, response.text()
    error = response.json()["error"]
    assert {"code", "message"} <= error.keys()
    assert error["code"] == code
    assert error["message"]


def _end_run(page: Page) -> bool:
    """Let the run end by itself for a while, else press Stop; True if it ended by itself.

    SmolLM2-135M samples, and now and then it rambles until its 2048-token context is
    full (over a minute here); the completion chain exposes no ``max_tokens`` to the
    playground, so the test stops such a run instead of waiting for it.
    """
    start = page.get_by_role("button", name="Start", exact=True)
    try:
        expect(start).to_be_visible(timeout=NATURAL_END_TIMEOUT_MS)
        return True
    except AssertionError:
        page.get_by_role("button", name=re.compile(r"Stop$")).click()
        expect(start).to_be_visible()
        return False


def test_playground_link_runs_the_completion_chain(
    playground_service: PlaygroundService, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    failed: list[str] = []
    page_errors: list[str] = []

    def on_response(response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            failed.append(f"{response.status} {response.url}")

    def on_request_failed(request: Request) -> None:
        # Pressing Stop aborts stream_log on purpose; its status is asserted below.
        if not request.url.endswith("/stream_log"):
            failed.append(f"{request.failure} {request.url}")

    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    page.goto(f"{playground_service.playground()}?token={playground_service.token}")

    assert page.url == playground_service.playground()
    cookie = next(c for c in context.cookies() if c["name"] == COOKIE)
    assert cookie["value"] == playground_service.token
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert COOKIE not in page.evaluate("document.cookie")

    question = page.get_by_label("Input*", exact=True)
    expect(question).to_be_visible()
    question.fill("What is the capital of France?")
    page.get_by_label("System", exact=True).fill("Answer with one short sentence.")
    start = page.get_by_role("button", name="Start", exact=True)
    expect(start).to_be_enabled()
    with page.expect_response(
        lambda r: r.url.endswith("/runnables/completion/stream_log")
    ) as streamed:
        start.click()
    assert streamed.value.status == 200
    expect(_output_box(page)).to_have_text(ANSWER, timeout=OUTPUT_TIMEOUT_MS)
    ended_by_itself = _end_run(page)

    page.screenshot(path=tmp_path / "playground.png", full_page=True)
    assert ANSWER.match(_output_box(page).inner_text())
    if ended_by_itself:
        expect(page.get_by_role("button", name=re.compile("^Intermediate steps"))).to_be_visible()
    # The playground shows a failed run (or a rejected input) in a red box, not as output.
    expect(page.locator(".text-red-700")).to_have_count(0)
    assert not failed, failed
    assert not page_errors, page_errors


@pytest.mark.parametrize(
    "path", ["completion/playground/", "chat/playground/", "chat/input_schema"]
)
def test_runnables_without_token_are_401(
    playground_service: PlaygroundService, page: Page, path: str
) -> None:
    response = page.goto(f"{playground_service.url}/runnables/{path}")
    _assert_error_body(response, "missing_token")


@pytest.mark.parametrize("forge", ["garbage", "bad_signature"])
def test_bad_token_is_401_without_cookie(
    playground_service: PlaygroundService, context: BrowserContext, page: Page, forge: str
) -> None:
    if forge == "garbage":
        token = "not-a-jwt"
    else:
        header, claims, _signature = playground_service.token.split(".")
        token = f"{header}.{claims}.{'A' * 43}"

    response = page.goto(f"{playground_service.playground()}?token={token}")

    _assert_error_body(response, "invalid_token")
    assert response is not None
    assert "set-cookie" not in response.headers
    assert context.cookies() == []
    _assert_error_body(page.goto(playground_service.playground()), "missing_token")
