"""Shared test set-up: hand-written fixtures importable as ``fixtures.<name>``, and a
per-test cache folder (``tmp_path / "cache"``) so that no test reads or writes the user's
~/.cache or reuses another test's open mask_dict index."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from longrvos_data.loaders import mask_dict  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGRVOS_CACHE", str(tmp_path / "cache"))
    mask_dict.clear_open_indexes()
    yield
    mask_dict.clear_open_indexes()
