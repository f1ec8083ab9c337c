"""The FiftyOne tests' database: one private MongoDB per test module, a fresh dataset name per test."""
from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="module")
def fo(tmp_path_factory):
    from longrvos_data.converters import fiftyone as lfo
    with lfo.private_database(tmp_path_factory.mktemp("fo_db")):
        import fiftyone
        yield fiftyone


@pytest.fixture
def name(fo):
    value = f"t-{uuid.uuid4().hex[:10]}"
    yield value
    if fo.dataset_exists(value):
        fo.delete_dataset(value)
