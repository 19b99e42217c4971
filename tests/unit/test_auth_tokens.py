"""Token verification: every way a token can be wrong is a 401 that says why."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.tokens import TokenVerifier, load_or_create_secret, mint_token
from core.config import Settings
from core.errors import ApiError

SECRET = "unit-test-secret-unit-test-secret-!!"


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **kw)  # type: ignore[call-arg]


def hs(claims: dict, secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def future() -> int:
    return int(time.time()) + 86_400  # evaluated at collection: outlive a long suite


def test_valid_token_gives_principal(tmp_path: Path) -> None:
    verifier = TokenVerifier(settings(tmp_path, jwt_secret=SECRET))
    principal = verifier.verify(hs({"sub": "u1", "org_id": "o1", "role": "admin", "exp": future()}))
    assert (principal.org_id, principal.user_id, principal.role) == ("o1", "u1", "admin")
    assert principal.is_admin


def test_role_defaults_to_member(tmp_path: Path) -> None:
    verifier = TokenVerifier(settings(tmp_path, jwt_secret=SECRET))
    assert verifier.verify(hs({"sub": "u1", "org_id": "o1", "exp": future()})).role == "member"


@pytest.mark.parametrize(
    ("claims", "secret", "code", "fragment"),
    [
        ({"sub": "u", "org_id": "o", "exp": 1}, SECRET, "token_expired", "expired"),
        (
            {"sub": "u", "org_id": "o", "exp": future()},
            "another-secret-another-secret-!!!",
            "invalid_token",
            "signature",
        ),
        ({"sub": "u", "org_id": "o"}, SECRET, "invalid_token", "exp"),
        ({"org_id": "o", "exp": future()}, SECRET, "invalid_token", "sub"),
        ({"sub": "u", "exp": future()}, SECRET, "invalid_token", "org_id"),
        (
            {"sub": "u", "org_id": "o", "role": "root", "exp": future()},
            SECRET,
            "invalid_token",
            "role",
        ),
    ],
)
def test_bad_tokens_are_401(
    tmp_path: Path, claims: dict, secret: str, code: str, fragment: str
) -> None:
    verifier = TokenVerifier(settings(tmp_path, jwt_secret=SECRET))
    with pytest.raises(ApiError) as info:
        verifier.verify(hs(claims, secret))
    assert info.value.status_code == 401
    assert info.value.code == code
    assert fragment in info.value.message


def test_malformed_token_is_401(tmp_path: Path) -> None:
    verifier = TokenVerifier(settings(tmp_path, jwt_secret=SECRET))
    with pytest.raises(ApiError) as info:
        verifier.verify("not-a-jwt")
    assert info.value.status_code == 401


def test_issuer_and_audience_are_checked_when_configured(tmp_path: Path) -> None:
    verifier = TokenVerifier(
        settings(tmp_path, jwt_secret=SECRET, jwt_issuer="ai-helper-back", jwt_audience="core")
    )
    good = {"sub": "u", "org_id": "o", "exp": future(), "iss": "ai-helper-back", "aud": "core"}
    assert verifier.verify(hs(good)).user_id == "u"
    for wrong in ({"iss": "evil"}, {"aud": "other"}):
        with pytest.raises(ApiError):
            verifier.verify(hs({**good, **wrong}))


def test_rs256_public_key(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(settings(tmp_path, jwt_public_key=public_pem))
    claims = {"sub": "u", "org_id": "o", "exp": future()}
    assert verifier.verify(jwt.encode(claims, key, algorithm="RS256")).org_id == "o"
    # An HS256 token signed with the public key text must not pass (algorithm confusion).
    with pytest.raises(ApiError):
        verifier.verify(hs(claims, SECRET))


def test_generated_secret_is_private_and_stable(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "jwt_secret").st_mode)
    assert mode == 0o600
    assert load_or_create_secret(tmp_path) == first
    assert len(first) >= 32


def test_minted_token_verifies_with_generated_secret(tmp_path: Path) -> None:
    config = settings(tmp_path)
    token = mint_token(config, org_id="o1", user_id="u1", role="admin", ttl=60)
    principal = TokenVerifier(config).verify(token)
    assert (principal.org_id, principal.role) == ("o1", "admin")
