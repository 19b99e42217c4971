"""Bring your own key: stored encrypted, shown masked, used at once, rotated without restart."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from langserve import RemoteRunnable
from typer.testing import CliRunner

from cli import app
from db.migrate import sync_url
from tests.fakes.openai_server import FakeOpenAI
from tests.support.service import RunningService

ORG_KEY = "sk-org-a-own-key-1234"


def put_key(service: RunningService, key: str, role: str = "admin") -> httpx.Response:
    return httpx.put(
        f"{service.api}/provider-keys/openai",
        headers=service.headers("org-a", "boss", role),
        json={"api_key": key},
    )


def chat(service: RunningService, org: str = "org-a", **extra: object) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(
        f"{service.api}/chat/completions", headers=service.headers(org, "alice"), json=body
    )


def used_key(fake: FakeOpenAI) -> str:
    return fake.requests[-1].headers["authorization"].removeprefix("Bearer ")


def test_org_key_is_used_for_its_calls_only(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    assert put_key(service, ORG_KEY).status_code == 200
    chat(service)
    assert used_key(fake_openai) == ORG_KEY
    chat(service, stream=True)
    assert used_key(fake_openai) == ORG_KEY
    chat(service, thread_id="byok")  # the graph path (ChatOpenAI)
    assert used_key(fake_openai) == ORG_KEY
    RemoteRunnable(f"{service.url}/runnables/completion", headers=service.headers()).invoke(
        {"input": "x"}
    )
    assert used_key(fake_openai) == ORG_KEY
    chat(service, org="org-b")
    assert used_key(fake_openai) == "sk-service-key"


def test_keys_are_masked_encrypted_and_admin_only(service: RunningService) -> None:
    assert put_key(service, ORG_KEY, role="member").status_code == 403
    stored = put_key(service, ORG_KEY).json()
    assert stored["api_key"] == "...1234" and stored["last4"] == "1234"
    listed = httpx.get(f"{service.api}/provider-keys", headers=service.headers()).json()
    assert listed["data"][0]["provider"] == "openai"
    assert ORG_KEY not in str(listed)
    engine = sa.create_engine(sync_url(service.settings.resolved_database_url))
    with engine.connect() as conn:
        ciphertext = conn.execute(sa.text("SELECT ciphertext FROM ahc_provider_keys")).scalar_one()
    engine.dispose()
    assert ORG_KEY not in ciphertext


def test_rotation_and_deletion_take_effect_without_restart(
    service: RunningService, fake_openai: FakeOpenAI
) -> None:
    put_key(service, ORG_KEY)
    chat(service)
    put_key(service, "sk-org-a-rotated-5678")
    chat(service)
    assert used_key(fake_openai) == "sk-org-a-rotated-5678"
    deleted = httpx.delete(
        f"{service.api}/provider-keys/openai", headers=service.headers("org-a", "boss", "admin")
    )
    assert deleted.status_code == 204
    chat(service)
    assert used_key(fake_openai) == "sk-service-key"
    again = httpx.delete(
        f"{service.api}/provider-keys/openai", headers=service.headers("org-a", "boss", "admin")
    )
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/provider-keys/anthropic", {"api_key": "sk-12345678"}, 422),
        ("/provider-keys/openai", {"api_key": "short"}, 422),
        ("/provider-keys/openai", {"api_key": "has spaces in it"}, 422),
        ("/provider-keys/openai", {}, 422),
    ],
)
def test_bad_key_requests(service: RunningService, path: str, body: dict, status: int) -> None:
    response = httpx.put(
        f"{service.api}{path}", headers=service.headers("org-a", "boss", "admin"), json=body
    )
    assert response.status_code == status


def test_encryption_key_rotation(
    services, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    first = services.start(encryption_keys=[old])
    put_key(first, ORG_KEY)
    # Prepend a new encryption key: old ciphertexts still decrypt...
    second = services.start(encryption_keys=[new, old])
    chat(second)
    assert used_key(fake_openai) == ORG_KEY
    # ...and the rotate command re-encrypts them, after which the old key can go.
    monkeypatch.setenv("AHC_DATA_DIR", str(second.settings.data_dir))
    monkeypatch.setenv("AHC_ENCRYPTION_KEYS", f'["{new}", "{old}"]')
    result = CliRunner().invoke(app, ["rotate-keys"])
    assert result.exit_code == 0 and "re-encrypted 1" in result.output
    third = services.start(encryption_keys=[new])
    chat(third)
    assert used_key(fake_openai) == ORG_KEY
