"""Load ReferMo weights from local files, mapping every known naming onto the model's, with a report.

Accepted checkpoints (the kind is detected from the key names; nothing is downloaded):

- ``groundingdino-original``: GroundingDINO's own names, as in ``groundingdino_swint_ogc.pth``
  (IDEA-Research) and ``gdinot-1.8m-odvg.pth`` (Open-GroundingDino), BERT included;
- ``refermo-original``: the public ReferMo code's names, as in the released
  ``refermo_swint.pth`` (its ``model_state_dict``): the above plus the motion blocks,
  loralib's ``lora_A``/``lora_B``, the temporal decoder, the pixel and mask decoders;
- ``transformers``: a transformers ``GroundingDinoForObjectDetection`` or ``GroundingDinoModel``
  state (a ``model.safetensors`` / ``pytorch_model.bin`` file or its folder), in the naming of
  transformers 4.x or of the installed version;
- ``bert``: a BERT checkpoint (``bert-base-uncased``'s folder or file; ``BertModel`` or
  ``BertForPreTraining`` names, TF-era ``gamma``/``beta`` included) for the text encoder;
- ``refermo``: this package's own ``ReferMo.state_dict()``.

The original names map by rules (`original_targets`) taken from the architectures: the
transformers conversion script's renames for Swin, BERT and the GroundingDINO
encoder/decoder, ``nn.MultiheadAttention``'s packed ``in_proj`` (and Swin's ``qkv``) split
into query, key and value, loralib's adapters into peft's, ReferMo's own modules by
prefix. Copies of one shared module (``bbox_embed.0..5``, ``transformer.decoder.bbox_embed``,
``ref_point_head``, ``temporal_decoder.0..5``) load once and must be equal.

Every load returns a `LoadReport`: **missing** (the model expects the key from this kind of
checkpoint and it is absent), **unexpected** (a checkpoint key with no place in the model),
**wrong shape**, **conflicting** (shared copies that differ), plus what was **ignored**
(buffers rebuilt from the architecture: Swin's ``relative_position_index``, BERT's pooler and
``position_ids``) and what a detector-only checkpoint does not hold (ReferMo's own modules,
kept as initialised). With ``strict=True`` (the default) any of the first four refuses the
load with a `CheckpointError` that lists them; nothing is copied then.

Example:
    >>> from longrvos_data.baseline.model import build_model
    >>> model = build_model("refermo-swint", checkpoint="pretrained/gdinot-1.8m-odvg.pth")  # doctest: +SKIP
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import LongRVOSError

KINDS = ("groundingdino-original", "refermo-original", "transformers", "bert", "refermo")

SWIN = "model.backbone.conv_encoder.model."
TEXT = "model.text_backbone."

# Parts of ReferMo a detector checkpoint does not hold: kept as initialised when loading one.
REFERMO_ADDITIONS = (".motion_fusion.", ".lora_A.", ".lora_B.", "temporal_decoder.", "pixel_decoder.",
                     "mask_decoder.", SWIN + "hidden_states_norms.stage1.")


class CheckpointError(LongRVOSError):
    """A checkpoint that cannot be read, or whose keys do not fit the model."""


# Parameters the forward never reads (SwinModel's final norm: the backbone normalises per stage);
# no checkpoint needs to carry them.
UNUSED = (SWIN + "swin.layernorm.",)


def _is_addition(name: str) -> bool:
    return name.startswith(REFERMO_ADDITIONS) or any(a in name for a in REFERMO_ADDITIONS)


# ---- original names -> model names ----------------------------------------------------------------

_LEAF = r"(?P<leaf>weight|bias|lora_A|lora_B)"
_QKV = ("query", "key", "value")
_SWIN_QKV = ("query", "key", "value")

_DEFORMABLE = {"self_attn.sampling_offsets": "deformable_layer.self_attn.sampling_offsets",
               "self_attn.attention_weights": "deformable_layer.self_attn.attention_weights",
               "self_attn.value_proj": "deformable_layer.self_attn.value_proj",
               "self_attn.output_proj": "deformable_layer.self_attn.output_proj",
               "norm1": "deformable_layer.self_attn_layer_norm", "linear1": "deformable_layer.fc1",
               "linear2": "deformable_layer.fc2", "norm2": "deformable_layer.final_layer_norm"}
_TEXT_LAYER = {"self_attn.out_proj": "text_enhancer_layer.self_attn.out_proj", "linear1": "text_enhancer_layer.fc1",
               "linear2": "text_enhancer_layer.fc2", "norm1": "text_enhancer_layer.layer_norm_before",
               "norm2": "text_enhancer_layer.layer_norm_after"}
_FUSION = {"layer_norm_v": "fusion_layer.layer_norm_vision", "layer_norm_l": "fusion_layer.layer_norm_text",
           "attn.v_proj": "fusion_layer.attn.vision_proj", "attn.l_proj": "fusion_layer.attn.text_proj",
           "attn.values_v_proj": "fusion_layer.attn.values_vision_proj",
           "attn.values_l_proj": "fusion_layer.attn.values_text_proj",
           "attn.out_v_proj": "fusion_layer.attn.out_vision_proj", "attn.out_l_proj": "fusion_layer.attn.out_text_proj"}
_DECODER_LAYER = {"cross_attn.sampling_offsets": "encoder_attn.sampling_offsets",
                  "cross_attn.attention_weights": "encoder_attn.attention_weights",
                  "cross_attn.value_proj": "encoder_attn.value_proj", "cross_attn.output_proj": "encoder_attn.output_proj",
                  "norm1": "encoder_attn_layer_norm", "ca_text.out_proj": "encoder_attn_text.out_proj",
                  "catext_norm": "encoder_attn_text_layer_norm", "self_attn.out_proj": "self_attn.out_proj",
                  "norm2": "self_attn_layer_norm", "linear1": "fc1", "linear2": "fc2", "norm3": "final_layer_norm"}
_DECODER_SPLIT = {"ca_text": "encoder_attn_text", "self_attn": "self_attn"}


def _alt(table: Mapping[str, str]) -> str:
    return "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern
    target: Callable[[re.Match], str] | None   # None: ignore the key
    split: tuple[str, ...] = ()                # the target has "{part}"; the tensor splits along dim 0


def _rule(pattern: str, target: str | Callable[[re.Match], str] | None, split: tuple[str, ...] = ()) -> _Rule:
    fn = target if target is None or callable(target) else (lambda m, t=target: t.format(**m.groupdict()))
    return _Rule(re.compile(pattern), fn, split)


_RULES: tuple[_Rule, ...] = (
    # buffers rebuilt from the architecture
    _rule(r"backbone\.0\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index", None),
    _rule(r"bert\.(pooler\..+|embeddings\.position_ids)", None),
    # Swin-T (names of the transformers conversion script; see `_modernize` for newer transformers)
    _rule(rf"backbone\.0\.patch_embed\.proj\.{_LEAF}", SWIN + "embeddings.patch_embeddings.projection.{leaf}"),
    _rule(rf"backbone\.0\.patch_embed\.norm\.{_LEAF}", SWIN + "embeddings.norm.{leaf}"),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.norm1\.{_LEAF}",
          SWIN + "encoder.layers.{l}.blocks.{b}.layernorm_before.{leaf}"),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.norm2\.{_LEAF}",
          SWIN + "encoder.layers.{l}.blocks.{b}.layernorm_after.{leaf}"),
    _rule(r"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.attn\.relative_position_bias_table",
          SWIN + "encoder.layers.{l}.blocks.{b}.attention.self.relative_position_bias_table"),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.attn\.qkv\.{_LEAF}",
          SWIN + "encoder.layers.{l}.blocks.{b}.attention.self.{{part}}.{leaf}", _SWIN_QKV),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.attn\.proj\.{_LEAF}",
          SWIN + "encoder.layers.{l}.blocks.{b}.attention.output.dense.{leaf}"),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.mlp\.fc1\.{_LEAF}",
          SWIN + "encoder.layers.{l}.blocks.{b}.intermediate.dense.{leaf}"),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.blocks\.(?P<b>\d+)\.mlp\.fc2\.{_LEAF}",
          SWIN + "encoder.layers.{l}.blocks.{b}.output.dense.{leaf}"),
    _rule(rf"backbone\.0\.layers\.(?P<l>\d+)\.downsample\.(?P<m>reduction|norm)\.{_LEAF}",
          SWIN + "encoder.layers.{l}.downsample.{m}.{leaf}"),
    _rule(rf"backbone\.0\.norm(?P<k>\d)\.{_LEAF}",
          lambda m: f"{SWIN}hidden_states_norms.stage{int(m['k']) + 1}.{m['leaf']}"),
    # BERT, the feature map and the input projections
    _rule(r"bert\.(?P<rest>.+)", TEXT + "{rest}"),
    _rule(rf"feat_map\.{_LEAF}", "model.text_projection.{leaf}"),
    _rule(r"input_proj\.(?P<rest>\d+\.\d+\.(weight|bias))", "model.input_proj_vision.{rest}"),
    # the encoder
    _rule(r"transformer\.level_embed", "model.level_embed"),
    _rule(r"transformer\.tgt_embed\.weight", "model.query_position_embeddings.weight"),
    _rule(rf"transformer\.encoder\.layers\.(?P<i>\d+)\.(?P<m>{_alt(_DEFORMABLE)})\.{_LEAF}",
          lambda m: f"model.encoder.layers.{m['i']}.{_DEFORMABLE[m['m']]}.{m['leaf']}"),
    _rule(r"transformer\.encoder\.text_layers\.(?P<i>\d+)\.self_attn\.in_proj_(?P<leaf>weight|bias)",
          "model.encoder.layers.{i}.text_enhancer_layer.self_attn.{{part}}.{leaf}", _QKV),
    _rule(rf"transformer\.encoder\.text_layers\.(?P<i>\d+)\.(?P<m>{_alt(_TEXT_LAYER)})\.{_LEAF}",
          lambda m: f"model.encoder.layers.{m['i']}.{_TEXT_LAYER[m['m']]}.{m['leaf']}"),
    _rule(r"transformer\.encoder\.fusion_layers\.(?P<i>\d+)\.gamma_v", "model.encoder.layers.{i}.fusion_layer.vision_param"),
    _rule(r"transformer\.encoder\.fusion_layers\.(?P<i>\d+)\.gamma_l", "model.encoder.layers.{i}.fusion_layer.text_param"),
    _rule(rf"transformer\.encoder\.fusion_layers\.(?P<i>\d+)\.(?P<m>{_alt(_FUSION)})\.{_LEAF}",
          lambda m: f"model.encoder.layers.{m['i']}.{_FUSION[m['m']]}.{m['leaf']}"),
    _rule(r"transformer\.encoder\.motion_fusion_layers\.(?P<i>\d+)\.(?P<rest>.+)",
          "model.encoder.layers.{i}.motion_fusion.{rest}"),
    # two-stage proposals
    _rule(rf"transformer\.enc_output\.{_LEAF}", "model.enc_output.{leaf}"),
    _rule(rf"transformer\.enc_output_norm\.{_LEAF}", "model.enc_output_norm.{leaf}"),
    _rule(r"transformer\.enc_out_bbox_embed\.(?P<rest>.+)", "model.encoder_output_bbox_embed.{rest}"),
    # the decoder (and the mask decoder, built from the same layer)
    _rule(r"transformer\.decoder\.layers\.(?P<i>\d+)\.(?P<a>ca_text|self_attn)\.in_proj_(?P<leaf>weight|bias)",
          lambda m: f"model.decoder.layers.{m['i']}.{_DECODER_SPLIT[m['a']]}.{{part}}.{m['leaf']}", _QKV),
    _rule(rf"transformer\.decoder\.layers\.(?P<i>\d+)\.(?P<m>{_alt(_DECODER_LAYER)})\.{_LEAF}",
          lambda m: f"model.decoder.layers.{m['i']}.{_DECODER_LAYER[m['m']]}.{m['leaf']}"),
    _rule(r"mask_decoder\.(?P<i>\d+)\.(?P<a>ca_text|self_attn)\.in_proj_(?P<leaf>weight|bias)",
          lambda m: f"mask_decoder.{m['i']}.{_DECODER_SPLIT[m['a']]}.{{part}}.{m['leaf']}", _QKV),
    _rule(rf"mask_decoder\.(?P<i>\d+)\.(?P<m>{_alt(_DECODER_LAYER)})\.{_LEAF}",
          lambda m: f"mask_decoder.{m['i']}.{_DECODER_LAYER[m['m']]}.{m['leaf']}"),
    _rule(rf"transformer\.decoder\.norm\.{_LEAF}", "model.decoder.layer_norm.{leaf}"),
    _rule(r"(transformer\.decoder\.)?ref_point_head\.(?P<rest>.+)", "model.decoder.reference_points_head.{rest}"),
    _rule(r"(transformer\.decoder\.)?bbox_embed\.\d+\.(?P<rest>.+)", "bbox_embed.{rest}"),
    # ReferMo's video modules
    _rule(r"temporal_decoder\.\d+\.(?P<rest>.+)", "temporal_decoder.{rest}"),
    _rule(r"pixel_decoder\.(?P<rest>.+)", "pixel_decoder.{rest}"),
)


def _lora_leaf(name: str) -> str:
    """loralib's ``<module>.lora_A`` is peft's ``<module>.lora_A.default.weight``."""
    for leaf in ("lora_A", "lora_B"):
        if name.endswith("." + leaf):
            return f"{name}.default.weight"
    return name


def original_targets(key: str) -> list[tuple[str, int, int]] | None:
    """Where an original (GroundingDINO / ReferMo) key goes: ``[(name, part, parts), ...]``.

    ``part`` of ``parts`` equal slices along dim 0 (3 for a packed q/k/v, else 0 of 1).
    ``[]`` for a key that is ignored on purpose, None for an unknown key. Names are in the
    transformers 4.x naming for Swin (see `resolve`).

    Example:
        >>> original_targets("transformer.encoder.text_layers.0.self_attn.in_proj_bias")[1]
        ('model.encoder.layers.0.text_enhancer_layer.self_attn.key.bias', 1, 3)
    """
    for rule in _RULES:
        m = rule.pattern.fullmatch(key)
        if m is None:
            continue
        if rule.target is None:
            return []
        name = rule.target(m)
        if rule.split:
            return [(_lora_leaf(name.format(part=p)), i, len(rule.split)) for i, p in enumerate(rule.split)]
        return [(_lora_leaf(name), 0, 1)]
    return None


# ---- transformers naming across versions ------------------------------------------------------------

_SWIN_RENAMES = (  # transformers 4.x -> 5.x, inside the Swin backbone
    ("attention.self.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
    ("attention.self.query.", "attention.q_proj."), ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."), ("attention.output.dense.", "attention.o_proj."),
    ("intermediate.dense.", "mlp.fc1."), ("output.dense.", "mlp.fc2."),
)


def _modernize(name: str) -> str:
    """A transformers 4.x Swin name in the 5.x layout (``swin.`` level, ``q_proj``, ``mlp.fc1``...)."""
    if not name.startswith(SWIN) or name.startswith(SWIN + "hidden_states_norms."):
        return name
    rest = name[len(SWIN):]
    for old, new in _SWIN_RENAMES:
        rest = rest.replace(old, new)
    if rest.startswith(("encoder.", "embeddings.", "layernorm.")):
        rest = "swin." + rest
    return SWIN + rest


def _legacy(name: str) -> str:
    """The inverse of `_modernize`."""
    if not name.startswith(SWIN + "swin."):
        return name
    rest = name[len(SWIN) + len("swin."):]
    for old, new in reversed(_SWIN_RENAMES):
        rest = rest.replace(new, old)
    return SWIN + rest


def resolve(name: str, model_keys: Mapping[str, object] | set[str]) -> str:
    """``name`` as the installed model spells it: the transformers version's Swin layout, and
    ``<module>.base_layer.<leaf>`` where peft wrapped the linear layer in LoRA. Unchanged if none fits."""
    for cand in (name, _modernize(name)):
        if cand in model_keys:
            return cand
        head, _, leaf = cand.rpartition(".")
        wrapped = f"{head}.base_layer.{leaf}"
        if leaf in ("weight", "bias") and wrapped in model_keys:
            return wrapped
    return name


# ---- reading ---------------------------------------------------------------------------------------

_WRAPPERS = ("model_state_dict", "model", "state_dict", "module")


def read_state_dict(path: str | Path, *, trusted: bool = False) -> dict[str, Tensor]:
    """The tensors of a checkpoint file (``.pth``/``.pt``/``.bin``/``.safetensors``) or model folder.

    Wrappers are unwrapped (``model_state_dict``, ``model``, ``state_dict``) and a DDP
    ``module.`` prefix is dropped. Pickled files are read with ``weights_only=True``: a file
    that also pickles arbitrary objects needs ``trusted=True``, for files you trust.

    Raises:
        CheckpointError: missing, unreadable or without tensors.
    """
    p = Path(path)
    if p.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(p), device="cpu")
        else:
            data = torch.load(p, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # noqa: BLE001 - every reader error becomes one message naming the file
        hint = " (it pickles more than tensors: pass trusted=True if you trust the file)" \
            if not trusted and "weights_only" in str(err) else ""
        raise CheckpointError(f"{p}: cannot read the checkpoint: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}{hint}") from None
    while isinstance(data, Mapping) and not any(isinstance(v, Tensor) for v in data.values()):
        inner = next((data[k] for k in _WRAPPERS if isinstance(data.get(k), Mapping)), None)
        if inner is None:
            break
        data = inner
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{p}: holds a {type(data).__name__}, not a state dict")
    tensors = {str(k).removeprefix("module."): v
               for k, v in data.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{p}: no tensors found (keys: {', '.join(list(map(str, data))[:5])})")
    return tensors


def detect_kind(keys: Iterable[str]) -> str:
    """Which naming a state dict uses (one of `KINDS`); raises `CheckpointError` if none fits."""
    keys = list(keys)

    def any_starts(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if any(".motion_fusion." in k for k in keys) and any_starts("model."):
        return "refermo"
    if any_starts("transformer.encoder.motion_fusion_layers."):
        return "refermo-original"
    if any_starts("transformer.", "backbone.0."):
        return "groundingdino-original"
    if any_starts("model.backbone.conv_encoder.", "model.text_backbone.", "backbone.conv_encoder.", "text_backbone."):
        return "transformers"
    if any_starts("bert.", "embeddings.word_embeddings.", "encoder.layer."):
        return "bert"
    raise CheckpointError("cannot tell the checkpoint's kind from its keys (first: "
                          f"{', '.join(keys[:3])}); expected GroundingDINO, ReferMo, transformers or BERT names")


# ---- mapping a whole state dict ------------------------------------------------------------------------

@dataclass
class Mapped:
    """A state dict converted to the model's names, with what did not convert."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)     # model name -> first checkpoint key
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)


def _put(out: Mapped, target: str, tensor: Tensor, source: str) -> None:
    if target in out.tensors:
        old = out.tensors[target]
        if old.shape != tensor.shape or (old.device.type != "meta" and not torch.equal(old, tensor)):
            out.conflicting.append(f"{source} (differs from {out.sources[target]})")
        return
    out.tensors[target] = tensor
    out.sources[target] = source


def _hf_name(key: str) -> str | None:
    """A transformers-format key in the model's naming (before `resolve`); None to ignore."""
    if key.endswith((".relative_position_index", ".num_batches_tracked")) or \
            key.startswith(("model.text_backbone.pooler.", "model.text_backbone.embeddings.position_ids")):
        return None
    if not key.startswith(("model.", "bbox_embed.", "class_embed.")):
        key = "model." + key                               # a GroundingDinoModel saved alone
    m = re.fullmatch(r"(model\.decoder\.)?bbox_embed\.\d+\.(.+)", key)
    if m:
        return "bbox_embed." + m[2]
    return key


def _bert_name(key: str) -> str | None:
    if key.startswith("cls.") or key.endswith("position_ids") or ".pooler." in "." + key:
        return None
    key = key.removeprefix("bert.")
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    return TEXT + key


def convert(state: Mapping[str, Tensor], kind: str, model_keys: Mapping[str, object] | set[str]) -> Mapped:
    """``state`` (of naming ``kind``) in the model's names; ``model_keys`` are the model's state-dict keys."""
    out = Mapped()
    for key, tensor in state.items():
        if kind in ("groundingdino-original", "refermo-original"):
            targets = original_targets(key)
            if targets is None:
                out.unexpected.append(key)
                continue
            if not targets:
                out.ignored.append(key)
                continue
            for name, part, parts in targets:
                piece = tensor if parts == 1 else tensor.chunk(parts, dim=0)[part]
                _put(out, resolve(name, model_keys), piece, key)
            continue
        if kind == "refermo":
            name: str | None = key
        elif kind == "transformers":
            name = _hf_name(key)
        elif kind == "bert":
            name = _bert_name(key)
        else:
            raise ValueError(f"unknown checkpoint kind {kind!r}; one of {', '.join(KINDS)}")
        if name is None:
            out.ignored.append(key)
            continue
        name = resolve(name, model_keys)
        if name not in model_keys:
            out.unexpected.append(key)
            continue
        _put(out, name, tensor, key)
    return out


def export_original(model_state: Mapping[str, Tensor], original_keys: Iterable[str]) -> dict[str, Tensor]:
    """The model's tensors under the original names ``original_keys`` (packed q/k/v re-joined).

    With the key list of an original checkpoint this writes a model back in that naming;
    keys that are ignored on load (rebuilt buffers) or absent from the model are skipped.
    """
    out: dict[str, Tensor] = {}
    for key in original_keys:
        targets = original_targets(key)
        if not targets:
            continue
        names = [resolve(name, model_state) for name, _, _ in targets]
        if all(n in model_state for n in names):
            parts = [model_state[n] for n in names]
            out[key] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return out


# ---- the report and the load ------------------------------------------------------------------------

def _listing(items: list[str], first: int = 5) -> str:
    shown = ", ".join(items[:first])
    return shown + (f", ... ({len(items) - first} more)" if len(items) > first else "")


@dataclass
class LoadReport:
    """What a load did. ``ok`` when nothing was missing, unexpected, of the wrong shape or conflicting."""

    source: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    not_in_checkpoint: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape or self.conflicting)

    def problems(self) -> list[str]:
        """One line per kind of problem, with its count and the first few names."""
        lines = []
        if self.missing:
            lines.append(f"missing {len(self.missing)} key(s): {_listing(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected {len(self.unexpected)} key(s): {_listing(self.unexpected)}")
        if self.wrong_shape:
            shapes = [f"{n} (checkpoint {tuple(c)}, model {tuple(m)})" for n, c, m in self.wrong_shape]
            lines.append(f"wrong shape {len(self.wrong_shape)} key(s): {_listing(shapes, 3)}")
        if self.conflicting:
            lines.append(f"conflicting {len(self.conflicting)} shared copies: {_listing(self.conflicting, 3)}")
        return lines

    def summary(self) -> str:
        head = (f"{self.source} ({self.kind}): loaded {len(self.loaded)} tensor(s), ignored {len(self.ignored)}, "
                f"{len(self.not_in_checkpoint)} kept as initialised")
        return "\n".join([head, *self.problems()])


def _expected(name: str, kind: str) -> bool:
    """Whether a checkpoint of ``kind`` should carry model parameter ``name``."""
    if name.startswith(UNUSED):
        return False
    if kind == "bert":
        return name.startswith(TEXT)
    if kind in ("groundingdino-original", "transformers"):
        return not _is_addition(name)
    return True


def load_weights(model: nn.Module, checkpoint: str | Path | Mapping[str, Tensor], *, kind: str = "auto",
                 strict: bool = True, trusted: bool = False) -> LoadReport:
    """Copy a checkpoint into ``model`` (a `ReferMo`), mapping its names; returns a `LoadReport`.

    Args:
        checkpoint: a file or model folder (local only), or a state dict already in memory.
        kind: one of `KINDS`, or ``"auto"`` to detect it from the keys.
        strict: refuse (raise `CheckpointError`, copying nothing) on any missing, unexpected,
            wrongly shaped or conflicting key; ``False`` loads what fits and reports the rest.
        trusted: read pickles that hold more than tensors (see `read_state_dict`).

    On a model built on the ``meta`` device the tensors are assigned, not copied.
    """
    source = str(checkpoint) if not isinstance(checkpoint, Mapping) else "<state dict>"
    state = dict(checkpoint) if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint, trusted=trusted)
    if kind == "auto":
        kind = detect_kind(state)
    elif kind not in KINDS:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; one of {', '.join(KINDS)}")
    own = model.state_dict()
    mapped = convert(state, kind, own)
    report = LoadReport(source, kind, unexpected=mapped.unexpected, ignored=mapped.ignored,
                        conflicting=mapped.conflicting)
    good: dict[str, Tensor] = {}
    for name, tensor in mapped.tensors.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            report.wrong_shape.append((name, tuple(tensor.shape), tuple(own[name].shape)))
        else:
            good[name] = tensor
    for name in own:
        if name in mapped.tensors:
            continue
        (report.missing if _expected(name, kind) else report.not_in_checkpoint).append(name)
    report.loaded = sorted(good)
    if strict and not report.ok:
        raise CheckpointError(f"{source}: the {kind} checkpoint does not fit the model:\n  "
                              + "\n  ".join(report.problems())
                              + "\n(load_weights(..., strict=False) loads what fits)")
    on_meta = any(p.device.type == "meta" for p in own.values())
    if on_meta:
        model.load_state_dict(good, strict=False, assign=True)
    else:
        with torch.no_grad():
            for name, tensor in good.items():
                own[name].copy_(tensor)
    return report
