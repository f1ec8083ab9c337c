"""ReferMo's checkpoint loader: the original names (from the committed key lists), transformers, BERT, its own."""
from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from fixtures.refermo_keys import read_keys
from longrvos_data.baseline.model import build_model
from longrvos_data.baseline.weights import (
    CheckpointError,
    LoadReport,
    _legacy,
    detect_kind,
    export_original,
    load_weights,
    original_targets,
    read_state_dict,
)

ADDITIONS = (".motion_fusion.", ".lora_A.", ".lora_B.", "temporal_decoder.", "pixel_decoder.", "mask_decoder.",
             "hidden_states_norms.stage1.")
UNUSED = "model.backbone.conv_encoder.model.swin.layernorm."


def synthetic(name: str) -> dict[str, torch.Tensor]:
    """A checkpoint with every key of the list: key k's row r holds k * 1e6 + r (float64, exact).

    Rows are expanded views of one column, so a full-size checkpoint takes a few MB; copies of a
    shared module (third column) are the same tensor, as in a real checkpoint.
    """
    out: dict[str, torch.Tensor] = {}
    for k, (key, shape, alias) in enumerate(read_keys(name)):
        if alias is not None:
            out[key] = out[alias]
            continue
        if not shape:
            out[key] = torch.tensor(float(k) * 1e6, dtype=torch.float64)
            continue
        col = float(k) * 1e6 + torch.arange(shape[0], dtype=torch.float64)
        out[key] = col.view(-1, *([1] * (len(shape) - 1))).expand(*shape)
    return out


def test_every_original_key_has_a_rule():
    for name in ("groundingdino_swint_keys.txt", "refermo_swint_keys.txt"):
        unknown = [key for key, _, _ in read_keys(name) if original_targets(key) is None]
        assert unknown == []


def test_refermo_checkpoint_round_trips(tmp_path):
    state = synthetic("refermo_swint_keys.txt")
    path = tmp_path / "refermo_swint.pth"
    torch.save({"model_state_dict": state, "epoch": 5}, path)
    assert path.stat().st_size < 20_000_000                      # expanded views: the rows only
    model = build_model("refermo-swint", device="meta")
    report = load_weights(model, path)
    assert isinstance(report, LoadReport) and report.kind == "refermo-original" and report.ok
    assert report.missing == report.unexpected == report.wrong_shape == report.conflicting == []
    assert all(n.startswith(UNUSED) for n in report.not_in_checkpoint) and len(report.not_in_checkpoint) == 2
    assert sorted(report.ignored) == sorted(k for k in state if k.endswith("relative_position_index")
                                            or k.startswith("bert.pooler."))
    # every model tensor came from the checkpoint, and the original names come back
    assert {p.device.type for n, p in model.named_parameters() if not n.startswith(UNUSED)} == {"cpu"}
    back = export_original(model.state_dict(), state)
    assert set(back) == set(state) - set(report.ignored)
    for key, tensor in back.items():
        assert torch.equal(tensor, state[key]), key


def test_groundingdino_checkpoint_keeps_refermo_modules_initialised(tmp_path):
    state = synthetic("groundingdino_swint_keys.txt")
    path = tmp_path / "groundingdino_swint_ogc.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    model = build_model("refermo-swint", device="meta")
    report = load_weights(model, path)
    assert report.kind == "groundingdino-original" and report.ok
    assert report.not_in_checkpoint and all(n.startswith(UNUSED) or any(a in n for a in ADDITIONS)
                                            for n in report.not_in_checkpoint)
    own = model.state_dict()
    assert all(own[n].device.type == "meta" for n in report.not_in_checkpoint)
    assert sum(".motion_fusion." in n for n in report.not_in_checkpoint) > 6 * 40
    back = export_original(own, state)
    assert set(back) == set(state) - set(report.ignored)
    assert all(torch.equal(back[k], state[k]) for k in back)
    # the q/k/v split: the text enhancer's key projection is the middle third of in_proj_weight
    packed = state["transformer.encoder.text_layers.2.self_attn.in_proj_weight"]
    assert torch.equal(own["model.encoder.layers.2.text_enhancer_layer.self_attn.key.weight"], packed[256:512])


def test_missing_and_unexpected_keys_are_reported_and_refused(tmp_path):
    state = synthetic("groundingdino_swint_keys.txt")
    del state["transformer.decoder.layers.4.linear1.weight"]
    del state["feat_map.bias"]
    state["transformer.decoder.extra_head.weight"] = torch.zeros(3)
    model = build_model("refermo-swint", device="meta")
    with pytest.raises(CheckpointError) as err:
        load_weights(model, state)
    text = str(err.value)
    assert "missing 2 key(s): " in text and "model.decoder.layers.4.fc1.base_layer.weight" in text
    assert "model.text_projection.bias" in text
    assert "unexpected 1 key(s): transformer.decoder.extra_head.weight" in text
    assert all(p.device.type == "meta" for p in model.parameters())        # nothing was loaded
    report = load_weights(model, state, strict=False)
    assert not report.ok and len(report.missing) == 2 and report.unexpected == ["transformer.decoder.extra_head.weight"]


def test_wrong_shapes_are_refused_with_their_names(tmp_path):
    torch.manual_seed(0)
    model = build_model("refermo-tiny")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["bbox_embed.layers.0.weight"] = torch.zeros(32, 16)
    state["model.level_embed"] = torch.zeros(5, 32)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    other = build_model("refermo-tiny")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        build_model("refermo-tiny", checkpoint=path)
    text = str(err.value)
    assert str(path) in text and "wrong shape 2 key(s)" in text
    assert "bbox_embed.layers.0.weight (checkpoint (32, 16), model (32, 32))" in text
    assert "model.level_embed (checkpoint (5, 32), model (4, 32))" in text
    with pytest.raises(CheckpointError):
        load_weights(other, path)
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())   # refused: untouched


def test_own_state_dict_loads_back_exactly(tmp_path):
    torch.manual_seed(0)
    a = build_model("refermo-tiny")
    torch.manual_seed(1)
    b = build_model("refermo-tiny")
    path = tmp_path / "refermo.pth"
    torch.save(a.state_dict(), path)
    report = load_weights(b, path)
    assert report.kind == "refermo" and report.ok and report.not_in_checkpoint == []
    want = a.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in b.state_dict().items())


def _hf_detector(model):
    from transformers import GroundingDinoForObjectDetection

    torch.manual_seed(3)
    return GroundingDinoForObjectDetection(model.gd_config)


@pytest.mark.parametrize("legacy", [False, True], ids=["installed-naming", "transformers-4-naming"])
def test_transformers_checkpoint_loads(tmp_path, legacy):
    torch.manual_seed(0)
    model = build_model("refermo-tiny")
    hf = _hf_detector(model).state_dict()
    if legacy:
        hf = {_legacy(k): v for k, v in hf.items()}
        assert any(".attention.self.query." in k for k in hf)
    folder = tmp_path / "grounding-dino"
    folder.mkdir()
    torch.save(hf, folder / "pytorch_model.bin")
    report = load_weights(model, folder)
    assert report.kind == "transformers" and report.ok, report.summary()
    own = model.state_dict()
    assert torch.equal(own["bbox_embed.layers.2.weight"], hf["bbox_embed.0.layers.2.weight"])
    text_key = "model.text_backbone.encoder.layer.1.attention.self.query.weight"
    assert torch.equal(own[text_key], hf[text_key])
    fc1 = "model.encoder.layers.1.deformable_layer.fc1"
    assert torch.equal(own[fc1 + ".base_layer.weight"], hf[fc1 + ".weight"])
    assert all(any(a in n for a in ADDITIONS) or n.startswith(UNUSED) for n in report.not_in_checkpoint)


def test_bert_checkpoint_fills_the_text_encoder(tmp_path):
    from transformers import BertModel

    torch.manual_seed(0)
    model = build_model("refermo-tiny")
    bert = BertModel(model.gd_config.text_config).state_dict()
    # bert-base-uncased's own file: BertForPreTraining names, TF-era LayerNorm gamma/beta, a pooler, a head
    state = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in bert.items()}
    state["cls.predictions.bias"] = torch.zeros(64)
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    report = load_weights(model, path)
    assert report.kind == "bert" and report.ok
    assert set(report.loaded) == {n for n in model.state_dict() if n.startswith("model.text_backbone.")}
    own = model.state_dict()
    assert torch.equal(own["model.text_backbone.embeddings.LayerNorm.weight"], bert["embeddings.LayerNorm.weight"])
    assert "cls.predictions.bias" in report.ignored


def test_unreadable_and_unknown_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        read_state_dict(tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot read the checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no tensors found"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="cannot tell the checkpoint's kind"):
        detect_kind(["head.weight", "head.bias"])
