"""Field types shared by several settings areas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr


def _blank_is_none(value: SecretStr | None) -> SecretStr | None:
    """An empty ``OPENAI_API_KEY=`` means "no key", not a key that fails upstream.

    The same for ``AHC_JWT_SECRET=`` (docker-compose passes unset variables as empty):
    the secret is then generated into data_dir, never an empty one.
    """
    if value is not None and not value.get_secret_value().strip():
        return None
    return value


OptionalSecret = Annotated[SecretStr | None, AfterValidator(_blank_is_none)]
"""A secret that may be unset; a blank (or whitespace-only) value counts as unset."""
