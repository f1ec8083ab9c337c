"""ReferMo's configuration: typed dataclasses read from the YAML files shipped in ``configs/``.

A config is addressed by name (``refermo-swint``: the model as the Long-RVOS code builds it;
``refermo-tiny``: the same architecture shrunk so that it trains on a CPU in seconds, for
tests) or by the path of a YAML file with the same keys. Every key is checked: an unknown
key, a wrong type or a bad value is a `ConfigError` naming the file and the key.

Example:
    >>> cfg = load_config("refermo-swint")
    >>> cfg.num_queries, cfg.lora.rank, cfg.motion.gate_init
    (900, 32, 0.0001)
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LongRVOSError

CONFIG_DIR = Path(__file__).with_name("configs")

CONFIGS = {
    "refermo-swint": "refermo-swint.yaml",
    "refermo-tiny": "refermo-tiny.yaml",
}
"""The shipped configs, by name (a literal registry: nothing is discovered at import)."""


class ConfigError(LongRVOSError):
    """A config that cannot be used: unknown name, unreadable YAML, unknown key or bad value."""


@dataclass(frozen=True)
class SwinSpec:
    """The Swin backbone (transformers ``SwinConfig``); Swin-T is the default."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    image_size: int = 224
    drop_path_rate: float = 0.2


@dataclass(frozen=True)
class TextSpec:
    """The BERT text encoder (transformers ``BertConfig``); bert-base-uncased is the default.

    ``special_token_ids`` are the ids of ``[CLS]``, ``[SEP]``, ``.`` and ``?`` in the vocabulary:
    GroundingDINO splits the caption into phrases at these tokens. ``vocab`` is the BERT
    ``vocab.txt`` (a path relative to the config file, or absolute); empty: give it when training
    (bert-base-uncased's, never downloaded). A checkpoint carries its vocabulary itself.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    special_token_ids: tuple[int, ...] = (101, 102, 1012, 1029)
    vocab: str = ""


@dataclass(frozen=True)
class LoraSpec:
    """LoRA on the encoder and decoder linear layers (loralib's defaults: alpha 1, no dropout)."""

    rank: int = 32
    alpha: float = 1.0
    dropout: float = 0.0


@dataclass(frozen=True)
class MotionSpec:
    """The motion fusion block in every encoder layer.

    ``frames`` motion maps per keyframe (the 3 P-frames after it); ``max_frames`` sizes the
    temporal position table (the public code's 11); ``gate_init`` is the layer scale of the
    gated residual.
    """

    frames: int = 3
    max_frames: int = 11
    heads: int = 4
    points: int = 4
    rank: int = 32
    gate_init: float = 1e-4
    drop_path: float = 0.1


@dataclass(frozen=True)
class MaskHeadSpec:
    """The deformable mask decoder over the FPN pixel decoder's stride-4 features."""

    layers: int = 3
    heads: int = 8
    points: int = 16
    ffn_dim: int = 1024


@dataclass(frozen=True)
class LossWeights:
    """The weight of each term, also used as the matcher's cost weights (the recipe uses the same values).

    Field ``x`` weighs the term ``loss_x``: class focal 2, box L1 1, GIoU 1, mask focal 5, dice 5,
    projection dice 2 (``configs/lrvos_swint.yaml`` of the public code).
    """

    ce: float = 2.0
    bbox: float = 1.0
    giou: float = 1.0
    mask: float = 5.0
    dice: float = 5.0
    proj: float = 2.0

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"LossWeights.{name} = {value!r}: expected a finite number >= 0")
            object.__setattr__(self, name, float(value))

    def as_dict(self) -> dict[str, float]:
        """``{"loss_ce": 2.0, ...}``: the public ``weight_dict`` for one layer."""
        return {f"loss_{k}": v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class TrainSpec:
    """How `baseline.train` trains (REFERMO.md's recipe by default).

    ``lr`` is the base rate for a total batch of 2; the optimiser uses ``lr * batch_size *
    world_size / 2`` (1e-4 x 16 / 2 = 8e-4 on 8 GPUs of 2). No decay within ``epochs``.
    ``keyframes`` are drawn at random per sample among the video's codec keyframes; ``augment``
    applies the public code's crop, flip and colour jitter (`inputs.augment`); frames are then
    resized to ``short_side`` (the long side at most ``max_size``). ``precision``: ``auto``
    (bf16 autocast on a GPU that has it, else fp16 with a gradient scaler; fp32 on a CPU),
    ``fp32``, ``bf16`` or ``fp16``. ``checkpoint_every``, ``eval_every``, ``log_every`` count
    optimiser steps (0: only at the end / only at the end, when an evaluation split is given / every
    step); ``eval_videos`` caps the videos evaluated (0: all).
    """

    epochs: int = 6
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 1e-4
    clip_norm: float = 0.1
    keyframes: int = 6
    augment: bool = True
    short_side: int = 360
    max_size: int = 640
    precision: str = "auto"
    seed: int = 0
    workers: int = 2
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_videos: int = 0
    loss: LossWeights = field(default_factory=LossWeights)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ReferMoConfig:
    """Everything that shapes the model; the values of ``refermo-swint`` follow the public code."""

    name: str = "refermo-swint"
    backbone: SwinSpec = field(default_factory=SwinSpec)
    text: TextSpec = field(default_factory=TextSpec)
    d_model: int = 256
    num_queries: int = 900
    encoder_layers: int = 6
    decoder_layers: int = 6
    ffn_dim: int = 2048
    heads: int = 8
    num_feature_levels: int = 4
    encoder_points: int = 4
    decoder_points: int = 4
    max_text_len: int = 256
    fusion_droppath: float = 0.1
    dropout: float = 0.0
    lora: LoraSpec = field(default_factory=LoraSpec)
    motion: MotionSpec = field(default_factory=MotionSpec)
    mask_head: MaskHeadSpec = field(default_factory=MaskHeadSpec)
    query_decay: float = 0.5
    chunk_size: int = 36
    tracking_alpha: float = 0.1
    temporal_layers: int = 3
    temporal_ffn_dim: int = 2048
    infer_short_side: int = 360
    train: TrainSpec = field(default_factory=TrainSpec)

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"config {self.name!r}: field {key!r}: {why}")

        for key in ("d_model", "num_queries", "encoder_layers", "decoder_layers", "ffn_dim", "heads",
                    "chunk_size", "temporal_layers", "max_text_len"):
            need(getattr(self, key) > 0, key, "must be positive")
        need(self.d_model % 32 == 0, "d_model", "must be a multiple of 32 (GroupNorm(32) on the projections)")
        need(self.d_model % self.heads == 0, "heads", f"must divide d_model {self.d_model}")
        need(self.heads % 2 == 0, "heads", "must be even (the text enhancer and fusion use heads // 2)")
        need(self.d_model % self.motion.heads == 0, "motion.heads", f"must divide d_model {self.d_model}")
        need(self.d_model % self.mask_head.heads == 0, "mask_head.heads", f"must divide d_model {self.d_model}")
        need(self.num_feature_levels == 4, "num_feature_levels",
             "must be 4 (three Swin stages and one extra stride-2 level, as in GroundingDINO)")
        need(len(self.backbone.depths) == 4 and len(self.backbone.num_heads) == 4, "backbone",
             "depths and num_heads need 4 stages")
        need(0.0 < self.query_decay <= 1.0, "query_decay", "must lie in (0, 1]")
        need(0.0 <= self.tracking_alpha <= 1.0, "tracking_alpha", "must lie in [0, 1]")
        need(0 < self.motion.frames <= self.motion.max_frames, "motion.frames", "must lie in 1..motion.max_frames")
        need(len(self.text.special_token_ids) == 4, "text.special_token_ids",
             "needs the ids of [CLS], [SEP], '.' and '?'")
        need(self.lora.rank > 0, "lora.rank", "must be positive")
        need(self.infer_short_side >= 32, "infer_short_side", "must be at least 32")
        tr = self.train
        for key in ("epochs", "batch_size", "keyframes", "short_side", "max_size", "keep_checkpoints"):
            need(getattr(tr, key) > 0, f"train.{key}", "must be positive")
        for key in ("workers", "log_every", "checkpoint_every", "eval_every", "eval_videos"):
            need(getattr(tr, key) >= 0, f"train.{key}", "must be 0 or more")
        need(tr.lr > 0 and tr.weight_decay >= 0 and tr.clip_norm >= 0, "train.lr",
             "lr must be positive, weight_decay and clip_norm 0 or more")
        need(tr.max_size >= tr.short_side, "train.max_size", "must be at least train.short_side")
        need(tr.precision in PRECISIONS, "train.precision", f"must be one of {', '.join(PRECISIONS)}")

    def queries_per_layer(self) -> list[int]:
        """Queries kept after each decoder layer: ``ceil(n * query_decay)`` each time (900 -> 15 at full size)."""
        out, n = [], self.num_queries
        for _ in range(self.decoder_layers):
            n = math.ceil(n * self.query_decay)
            out.append(n)
        return out

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _convert(value: Any, tp: Any, where: str, file: str) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, tuple[int, ...] or a spec dataclass)."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, file)
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{file}: key {where!r}: expected a list, got {value!r}")
        return tuple(_convert(v, inner, f"{where}[{i}]", file) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: key {where!r}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: key {where!r}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{file}: key {where!r}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{file}: key {where!r}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r}")  # a programming error, not bad input


def _build(cls: type, data: Any, where: str, file: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: key {where or '<top>'!r}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        keys = ", ".join(f"{where}.{k}" if where else str(k) for k in unknown)
        raise ConfigError(f"{file}: unknown key(s) {keys} (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k, file) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{file}: {err}") from None


def config_from_dict(data: dict[str, Any], *, source: str = "<dict>") -> ReferMoConfig:
    """A `ReferMoConfig` from plain data (as read from YAML); missing keys take the defaults.

    Example:
        >>> config_from_dict({"name": "small", "num_queries": 100}).num_queries
        100
    """
    return _build(ReferMoConfig, data, "", source)


def load_config(name_or_path: str | Path | ReferMoConfig) -> ReferMoConfig:
    """The config named ``name_or_path`` (see `CONFIGS`) or read from that YAML file.

    Raises:
        ConfigError: unknown name, missing file, invalid YAML, unknown key or bad value.

    Example:
        >>> load_config("refermo-tiny").num_queries
        16
    """
    if isinstance(name_or_path, ReferMoConfig):
        return name_or_path
    text = str(name_or_path)
    if text in CONFIGS:
        path = CONFIG_DIR / CONFIGS[text]
    elif text.endswith((".yaml", ".yml")) or "/" in text or Path(text).exists():
        path = Path(text)
    else:
        raise ConfigError(f"unknown ReferMo config {text!r}: known names are {', '.join(CONFIGS)}, "
                          "or give the path of a .yaml file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {reason}{where}") from None
    if data is None:
        data = {}
    cfg = config_from_dict(data, source=str(path))
    vocab = cfg.text.vocab
    if vocab and not Path(vocab).is_absolute():  # relative to the config file, as a user writes it
        cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, vocab=str((path.parent / vocab).resolve())))
    return cfg
