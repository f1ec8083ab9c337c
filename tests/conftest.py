"""Shared test set-up: hand-written fixtures importable as ``fixtures.<name>``, and a
per-test cache folder so that no test reads or writes the user's ~/.cache."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LONGRVOS_CACHE", str(tmp_path_factory.mktemp("cache")))
