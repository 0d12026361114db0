"""uer: assemble-on-demand pre-training and FastBERT.

    from uer import load_config, build_model
    model = build_model(load_config("models/bert/tiny.yaml"), vocab_size=21128)

Loading a config (``load_config``) and tokenising never import torch: component configs are
declared in torch-free modules, and a component's torch module is imported when the builder
first builds it. ``Model`` and ``build_model`` import torch when first used.
"""
from uer.config import Config, ConfigError, load_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Model", "build_model", "load_config", "__version__"]


def __getattr__(name: str):
    if name == "Model":
        from uer.model import Model

        return Model
    if name == "build_model":
        from uer.model_builder import build_model

        return build_model
    raise AttributeError(f"module 'uer' has no attribute {name!r}")
