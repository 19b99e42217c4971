"""Bring your own key: organizations' provider keys, encrypted at rest, cached decrypted.

Encryption is Fernet (AES-128-CBC + HMAC) through ``MultiFernet``: ``AHC_ENCRYPTION_KEYS``
lists keys newest first; the first encrypts, all decrypt, so the encryption key rotates by
prepending a new one (``ai-helper-core keys rotate`` re-encrypts stored keys with it). With
no key configured one is generated into the data directory (mode 0600), like the JWT secret.
Keys are never logged and never returned: the API shows the last four characters.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.config import Settings
from db.base import utcnow
from db.models import ProviderKey
from db.upsert import upsert

PROVIDERS = ("openai", "elevenlabs")
KEY_FILE = "encryption_key"


def load_vault(settings: Settings) -> MultiFernet:
    """The configured Fernet keys, or one generated into the data directory."""
    if settings.encryption_keys:
        return MultiFernet([Fernet(k.get_secret_value()) for k in settings.encryption_keys])
    path: Path = settings.data_dir / KEY_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        except FileExistsError:  # another worker created it first
            pass
    return MultiFernet([Fernet(path.read_bytes().strip())])


class ProviderKeyStore:
    """Stores, lists and resolves org keys; resolutions are cached for ``ttl`` seconds.

    Another instance sees a rotated key within ``ttl``; this one at once.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], vault: MultiFernet, ttl: float = 5.0
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def get(self, org_id: str, provider: str) -> str | None:
        """The org's decrypted key for ``provider``, or None."""
        cached = self._cache.get((org_id, provider))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._sessions() as session:
            row = await session.get(ProviderKey, (org_id, provider))
        key = self._vault.decrypt(row.ciphertext.encode()).decode() if row else None
        self._cache[(org_id, provider)] = (time.monotonic() + self._ttl, key)
        return key

    async def put(
        self, org_id: str, provider: str, api_key: str, *, updated_by: str
    ) -> ProviderKey:
        """Store (or replace) the org's key."""
        ciphertext = self._vault.encrypt(api_key.encode()).decode()
        async with self._sessions() as session:
            row = await upsert(  # one statement: concurrent first writes all succeed
                session,
                ProviderKey,
                {
                    "org_id": org_id,
                    "provider": provider,
                    "ciphertext": ciphertext,
                    "last4": api_key[-4:],
                    "updated_by": updated_by,
                    "updated_at": utcnow(),
                },
                key=("org_id", "provider"),
            )
            await session.commit()
        self._cache.pop((org_id, provider), None)
        return row

    async def list(self, org_id: str) -> list[ProviderKey]:
        """The org's stored keys (ciphertext stays inside)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ProviderKey)
                .where(ProviderKey.org_id == org_id)
                .order_by(ProviderKey.provider)
            )
            return list(rows.all())

    async def delete(self, org_id: str, provider: str) -> bool:
        """Remove the org's key; False if there was none."""
        async with self._sessions() as session:
            result = await session.execute(
                delete(ProviderKey).where(
                    ProviderKey.org_id == org_id, ProviderKey.provider == provider
                )
            )
            await session.commit()
        self._cache.pop((org_id, provider), None)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def rotate(self) -> int:
        """Re-encrypt every stored key with the newest encryption key."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(ProviderKey))).all()
            for row in rows:
                row.ciphertext = self._vault.rotate(row.ciphertext.encode()).decode()
            await session.commit()
        return len(rows)
