"""Models: the decoder-only transformer and its capability ladder (``conf/model/*.yaml``)."""

from sandbag.models.transformer import ModelConfig, Transformer, param_count

__all__ = ["ModelConfig", "Transformer", "param_count"]
