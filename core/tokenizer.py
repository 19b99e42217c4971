"""Offline token counting with tiktoken.

tiktoken downloads its encodings on first use, which fails without internet. The
``bpe-openai`` package ships ``cl100k_base`` and ``o200k_base``; we copy them (gunzipped)
into a cache directory of our own under the names tiktoken looks for (the sha1 of the
download URL), and point ``TIKTOKEN_CACHE_DIR`` at it. tiktoken checks the file's sha256
itself and deletes a mismatching file, which is why we never point it into site-packages.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import tiktoken
from langchain_core.messages import BaseMessage

ENCODINGS = ("cl100k_base", "o200k_base")
_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_O200K_MODELS = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")
_installed = False


def install_offline_encodings(cache_dir: Path) -> Path:
    """Make tiktoken find its encodings in ``cache_dir`` (idempotent, called at start-up)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("bpe_openai")
    locations = list(spec.submodule_search_locations or []) if spec else []
    source = Path(locations[0]) / "data" if locations else None
    for name in ENCODINGS:
        target = cache_dir / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()
        packed = source / f"{name}.tiktoken.gz" if source else None
        if not target.exists() and packed is not None and packed.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(gzip.decompress(packed.read_bytes()))
            tmp.replace(target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    global _installed
    _installed = True
    encoding_for.cache_clear()
    return cache_dir


@lru_cache(maxsize=4)
def encoding_for(model: str) -> tiktoken.Encoding:
    """o200k for the GPT-4o family and newer, cl100k otherwise (a fair estimate for others)."""
    if not _installed:  # used outside the app (a script, a test): a cache of our own
        install_offline_encodings(Path(tempfile.gettempdir()) / "ai-helper-core-tiktoken")
    name = "o200k_base" if model.startswith(_O200K_MODELS) else "cl100k_base"
    return tiktoken.get_encoding(name)


def preload_encodings() -> None:
    """Load both encodings now (~0.35 s each, file reads): call it off the event loop.

    Later lookups, for any model name, are then in memory (tiktoken caches by encoding).
    """
    for model in ("gpt-4o-mini", "gpt-4"):
        encoding_for(model)


def count_text_tokens(text: str, model: str = "gpt-4o-mini") -> int:
    """Tokens of a plain string."""
    return len(encoding_for(model).encode(text, disallowed_special=()))


def count_message_tokens(messages: Sequence[BaseMessage], model: str = "gpt-4o-mini") -> int:
    """Tokens of a chat prompt, with OpenAI's per-message framing overhead (3 + 3)."""
    encoding = encoding_for(model)
    total = 3
    for message in messages:
        text = message.content if isinstance(message.content, str) else message.text
        total += 3 + len(encoding.encode(text, disallowed_special=()))
    return total
