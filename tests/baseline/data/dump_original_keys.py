"""Regenerate the key lists in this folder from the original model definitions (not run by the tests).

    python dump_original_keys.py groundingdino GROUNDINGDINO_CHECKOUT groundingdino_swint_keys.txt
    python dump_original_keys.py refermo LONG_RVOS_CHECKOUT refermo_swint_keys.txt

GROUNDINGDINO_CHECKOUT is a checkout of IDEA-Research/GroundingDINO (its ``groundingdino``
package and ``config/GroundingDINO_SwinT_OGC.py``), LONG_RVOS_CHECKOUT one of
iSEE-Laboratory/Long_RVOS (``models/``, ``misc.py``, ``configs/lrvos_swint.yaml``). Their
model classes are built as their own build functions build them, with random weights: BERT
from ``BertConfig()`` (bert-base-uncased's architecture) instead of a download, and the
imports the constructors do not need (torchvision, the compiled deformable-attention op,
timm helpers, loralib, einops, plotting) replaced by stand-ins; loralib's ``Linear`` by one
with its parameters (weight, bias, lora_A (r, in), lora_B (out, r)).

Each line of the output: ``name<TAB>shape[<TAB>=first name of the same tensor]`` in
``state_dict()`` order; the third column marks the copies of a shared module.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
import types
from pathlib import Path

import torch
import transformers  # noqa: F401  - imported before the stand-ins: transformers probes for torchvision
from torch import nn
from transformers import BertConfig, BertModel

STAND_INS = ("torchvision", "supervision", "yapf", "MultiScaleDeformableAttention", "einops", "cv2", "util",
             "matplotlib", "pycocotools", "addict", "groundingdino._C")


class _Anything:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in STAND_INS or name.split(".")[0] in STAND_INS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        module.__version__ = "0.20.0"
        return module

    def exec_module(self, module):
        pass


class _DropPath(nn.Module):
    def __init__(self, p=0.0):
        super().__init__()


class _LoraLinear(nn.Linear):
    def __init__(self, in_features, out_features, r=0, **kwargs):
        super().__init__(in_features, out_features)
        self.lora_A = nn.Parameter(torch.zeros(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))


def _install_stand_ins() -> None:
    sys.meta_path.insert(0, _Finder())
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = _DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    sys.modules.update({"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                        "timm.models.layers": layers, "loralib": types.SimpleNamespace(Linear=_LoraLinear)})


def _bert() -> BertModel:
    model = BertModel(BertConfig())
    for name in ("get_extended_attention_mask", "invert_attention_mask", "get_head_mask"):
        if not hasattr(model, name):  # methods the original wrapper copies, gone from transformers 5
            object.__setattr__(model, name, lambda *a, **k: None)
    return model


class _Tokenizer:
    def convert_tokens_to_ids(self, tokens):
        return [101, 102, 1012, 1029][: len(tokens)]


def _namespace(data):
    if isinstance(data, dict):
        return types.SimpleNamespace(**{k: _namespace(v) for k, v in data.items()})
    return data


def build_groundingdino(checkout: Path) -> nn.Module:
    sys.path.insert(0, str(checkout))
    from groundingdino.util import get_tokenlizer

    get_tokenlizer.get_tokenlizer = lambda name: _Tokenizer()
    get_tokenlizer.get_pretrained_language_model = lambda name: _bert()
    from groundingdino.models.GroundingDINO.groundingdino import build_groundingdino as build

    cfg = runpy.run_path(str(checkout / "groundingdino/config/GroundingDINO_SwinT_OGC.py"))
    args = types.SimpleNamespace(**{k: v for k, v in cfg.items() if not k.startswith("__")}, device="cpu")
    return build(args)


def build_refermo(checkout: Path) -> nn.Module:
    import yaml

    sys.path.insert(0, str(checkout))
    from models.dino_util import get_tokenlizer

    get_tokenlizer.get_tokenlizer = lambda name: _Tokenizer()
    get_tokenlizer.get_pretrained_language_model = lambda name: _bert()
    from models.GroundingDINO import groundingdino as module

    module.torch.load = lambda *a, **k: {"model": {}}   # its build function loads the detector weights
    module.clean_state_dict = lambda state: state
    cfg = yaml.safe_load((checkout / "configs/lrvos_swint.yaml").read_text())
    return module.build_groundingdino(_namespace(cfg["GroundingDINO"]["value"]), num_classes=1)


def dump(model: nn.Module, out: Path, source: str) -> None:
    first: dict[int, str] = {}
    lines = [f"# state_dict keys of {source}, generated by dump_original_keys.py (random weights)"]
    for key, value in model.state_dict(keep_vars=True).items():
        shape = "x".join(str(s) for s in value.shape) or "scalar"
        origin = first.setdefault(id(value), key)
        lines.append(f"{key}\t{shape}" + (f"\t={origin}" if origin != key else ""))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    which, checkout, out = sys.argv[1], Path(sys.argv[2]).resolve(), Path(sys.argv[3])
    _install_stand_ins()
    if which == "groundingdino":
        dump(build_groundingdino(checkout), out, "IDEA-Research/GroundingDINO, GroundingDINO_SwinT_OGC")
    elif which == "refermo":
        dump(build_refermo(checkout), out, "iSEE-Laboratory/Long_RVOS, configs/lrvos_swint.yaml")
    else:
        raise SystemExit("first argument: groundingdino or refermo")
