"""The little language sense synthesis needs: is this text Korean?"""

from __future__ import annotations

import re

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")


def text_language(text: str, declared: str | None) -> str | None:
    """The declared ISO 639-1 code (lowercased), else ``ko`` when the text has Hangul."""
    if declared:
        return declared.strip().lower().split("-")[0] or None
    return "ko" if _HANGUL.search(text) else None
