"""Fixtures of the evaluation tests."""
import pytest

from evalcase import load_reference


@pytest.fixture(scope="session")
def ref():
    """The oracle: ``bench/reference_eval.py``, the direct implementation of the official definitions."""
    return load_reference()
