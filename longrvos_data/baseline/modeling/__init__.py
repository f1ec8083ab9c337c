"""ReferMo's pure ``nn.Module`` parts: motion fusion, tracking, temporal decoder, heads, the assembled model.

Importing this package imports torch, transformers and peft; the rest of the package does not.
"""
from .refermo import LayerPrediction, ReferMo, ReferMoOutput, is_trainable

__all__ = ["LayerPrediction", "ReferMo", "ReferMoOutput", "is_trainable"]
