"""Identifier patterns shared by the API schemas and the services (one source for both)."""

from __future__ import annotations

THREAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
TEMPLATE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
