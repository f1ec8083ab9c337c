"""Build ReferMo: one factory from a config (name, path or object) and local checkpoints.

Example:
    >>> from longrvos_data.baseline.model import build_model
    >>> model = build_model("refermo-swint", device="meta")       # the structure, no memory
    >>> model.config.queries_per_layer()[-1]
    15
    >>> model = build_model("refermo-swint", checkpoint="pretrained/gdinot-1.8m-odvg.pth")  # doctest: +SKIP

Torch, transformers and peft are imported when a model is built, not with this module.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, ReferMoConfig, load_config

if TYPE_CHECKING:
    from .modeling import ReferMo
    from .weights import LoadReport

CAPTION_END = "."


def build_model(config: str | Path | ReferMoConfig, *, checkpoint: str | Path | Sequence[str | Path] | None = None,
                device: str = "cpu", strict: bool = True, trusted: bool = False) -> ReferMo:
    """A `ReferMo` with the trainable set unfrozen, weights from local checkpoints, on ``device``.

    Args:
        config: a config name (``refermo-swint``, ``refermo-tiny``), a YAML path or a `ReferMoConfig`.
        checkpoint: one or more local checkpoints, loaded in order (a GroundingDINO detector and
            BERT, or a released ``refermo_swint.pth``, see `weights.load_weights`).
        device: where to build; ``"meta"`` builds the structure without allocating memory.
        strict: refuse checkpoints with missing, unexpected or wrongly shaped keys.
        trusted: allow pickled checkpoints that hold more than tensors.

    The load reports are kept in ``model.load_reports``.
    """
    import torch

    from .modeling import ReferMo
    from .weights import load_weights

    cfg = load_config(config)
    dev = torch.device(device)
    with dev:
        model = ReferMo(cfg)
    model.to(dev)  # tensors made with torch.Tensor(...) ignore the default device
    reports: list[LoadReport] = []
    paths = [] if checkpoint is None else [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    for path in paths:
        reports.append(load_weights(model, path, strict=strict, trusted=trusted))
    if reports and dev.type != "meta":
        model.to(dev)
    model.freeze()
    model.load_reports = reports
    return model


def build_tokenizer(vocab: str | Path | dict[str, int], *, lowercase: bool = True):
    """A BERT WordPiece tokenizer from a local ``vocab.txt`` (or its folder) or a token -> id dict.

    Example:
        >>> tok = build_tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "car"])})
        >>> tok("car")["input_ids"]
        [2, 4, 3]
    """
    from transformers import BertTokenizer

    if isinstance(vocab, dict):
        return BertTokenizer(vocab=vocab, do_lower_case=lowercase)
    path = Path(vocab)
    if path.is_dir():
        path = path / "vocab.txt"
    if not path.is_file():
        raise ConfigError(f"{path}: no such vocabulary file (a BERT vocab.txt or its folder)")
    return BertTokenizer(vocab=str(path), do_lower_case=lowercase)


def tokenize_captions(tokenizer, captions: Sequence[str], config: ReferMoConfig, *, device=None) -> dict:
    """``{"input_ids", "attention_mask"}`` (B, L) tensors, each caption ending in ``"."`` as GroundingDINO wants.

    Raises:
        ConfigError: the tokenizer's ids of [CLS], [SEP], '.', '?' differ from ``config.text.special_token_ids``
        (the phrase masks would be wrong).
    """
    ids = tuple(tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"]))
    if ids != tuple(config.text.special_token_ids):
        raise ConfigError(f"config {config.name!r}: field 'text.special_token_ids' is "
                          f"{list(config.text.special_token_ids)} but this vocabulary has {list(ids)}")
    texts = [c if c.rstrip().endswith(CAPTION_END) else c.rstrip() + CAPTION_END for c in captions]
    enc = tokenizer(texts, padding="longest", return_tensors="pt", truncation=True, max_length=config.max_text_len)
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out
