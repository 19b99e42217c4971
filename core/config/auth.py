"""Auth settings: how tokens are verified, and the keys that encrypt stored provider keys."""

from __future__ import annotations

from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, SecretStr, field_validator

from core.config.fields import OptionalSecret


class AuthSettings(BaseModel):
    """JWT verification, the session cookie, Fernet keys of stored provider keys."""

    jwt_secret: OptionalSecret = Field(
        default=None,
        description="HS256 secret shared with ai-helper-back. Generated into data_dir when "
        "neither this nor jwt_public_key is set.",
    )
    jwt_public_key: str | None = Field(
        default=None, description="PEM public key: tokens are then verified as RS256."
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = 10
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag of the ahc_token cookie; default: set when the request is https.",
    )
    encryption_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet keys for stored provider keys, newest first (rotation: prepend). "
        "Generated into data_dir when empty.",
    )

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        """A malformed key stops the start-up, not the first request that stores a key."""
        for number, key in enumerate(value, start=1):
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                raise ValueError(
                    f"entry {number} is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return value
