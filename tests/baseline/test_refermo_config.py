"""ReferMo configs: the shipped names, YAML paths, and every way a config can be wrong."""
from __future__ import annotations

import pytest

pytest.importorskip("yaml")

from longrvos_data.baseline.config import CONFIG_DIR, CONFIGS, ConfigError, config_from_dict, load_config


def test_shipped_configs_load_by_name_and_by_path():
    full = load_config("refermo-swint")
    assert (full.num_queries, full.encoder_layers, full.decoder_layers, full.lora.rank) == (900, 6, 6, 32)
    assert full.backbone.depths == (2, 2, 6, 2) and full.text.special_token_ids == (101, 102, 1012, 1029)
    assert full.motion.gate_init == 1e-4 and full.chunk_size == 36 and full.temporal_layers == 3
    assert full == config_from_dict({})                 # the dataclass defaults are the public code's values
    assert load_config(CONFIG_DIR / CONFIGS["refermo-tiny"]) == load_config("refermo-tiny")
    assert load_config(full) is full


@pytest.mark.parametrize("text, message", [
    ("num_queries: [1, 2]\n", "key 'num_queries': expected an integer"),
    ("lora: {rank: 8, scale: 2}\n", "unknown key(s) lora.scale"),
    ("motoin: {}\n", "unknown key(s) motoin"),
    ("backbone: {depths: 4}\n", "key 'backbone.depths': expected a list"),
    ("query_decay: 1.5\n", "field 'query_decay': must lie in (0, 1]"),
    ("d_model: 48\n", "field 'd_model': must be a multiple of 32"),
    ("heads: 5\n", "field 'heads': must divide d_model 256"),
    ("text: {special_token_ids: [1, 2]}\n", "field 'text.special_token_ids'"),
    ("motion: {frames: 12}\n", "field 'motion.frames'"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_configs_name_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def test_unknown_names_and_missing_files():
    with pytest.raises(ConfigError, match="unknown ReferMo config 'refermo-large': known names are refermo-swint"):
        load_config("refermo-large")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("configs/absent.yaml")
