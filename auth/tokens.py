"""JWTs as ai-helper-back issues them: verify (HS256 or RS256) and mint (HS256, for local use).

Claims: ``sub`` (user id), ``org_id``, optional ``role`` (``admin``/``member``), ``exp``
(required), and ``iss``/``aud`` when the service is configured to check them.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt

from core.config import Settings
from core.errors import ApiError

Role = Literal["admin", "member"]
SECRET_FILE = "jwt_secret"
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: every query the request makes is scoped by ``org_id``."""

    org_id: str
    user_id: str
    role: Role = "member"

    @property
    def is_admin(self) -> bool:
        """Admins see and manage the whole organization."""
        return self.role == "admin"


def load_or_create_secret(data_dir: Path) -> str:
    """Read the generated HS256 secret, creating it (mode 0600) on first use.

    Secure by default: a fresh install never runs with a guessable secret.
    """
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race: use its secret
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


class TokenVerifier:
    """Verifies bearer tokens with the configured key; built once per app."""

    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        if settings.jwt_public_key:
            self._key: str = settings.jwt_public_key
            self._algorithms = ["RS256"]
        else:
            self._key = signing_secret(settings)
            self._algorithms = ["HS256"]
        # Clients reuse one token for many calls: remember verified tokens until they expire
        # (RS256 verification costs ~0.1 ms; bounded, and expiry is re-checked on each hit).
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        """Decode ``token`` or raise a 401 :class:`ApiError` saying what was wrong."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        principal, expires = self._decode(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized("token_expired", "the token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise _unauthorized("invalid_token", "the token signature is invalid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(
                "invalid_token", f"the token lacks the {exc.claim!r} claim"
            ) from exc
        except jwt.PyJWTError as exc:
            raise _unauthorized("invalid_token", f"the token is invalid: {exc}") from exc
        org_id, user_id, role = (
            claims.get("org_id"),
            claims.get("sub"),
            claims.get("role", "member"),
        )
        if not isinstance(org_id, str) or not org_id:
            raise _unauthorized("invalid_token", "the token lacks the 'org_id' claim")
        if not isinstance(user_id, str) or not user_id:
            raise _unauthorized("invalid_token", "the token's 'sub' claim is empty")
        if role not in ("admin", "member"):
            raise _unauthorized("invalid_token", "the token's 'role' must be admin or member")
        return Principal(org_id=org_id, user_id=user_id, role=role), float(claims["exp"])


def signing_secret(settings: Settings) -> str:
    """The HS256 secret: configured, or generated into the data directory."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    return load_or_create_secret(settings.data_dir)


def mint_token(
    settings: Settings, *, org_id: str, user_id: str, role: Role = "member", ttl: int = 3600
) -> str:
    """Sign an HS256 token (the ``ai-helper-core token`` command and tests)."""
    if settings.jwt_public_key:
        raise ValueError("the service verifies RS256 tokens: mint them with ai-helper-back")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "org_id": org_id,
        "role": role,
        "iat": now,
        "exp": now + ttl,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, signing_secret(settings), algorithm="HS256")


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})
