"""uer: assemble-on-demand pre-training and FastBERT.

    from uer import load_config, build_model
    model = build_model(load_config("models/bert/tiny.yaml"), vocab_size=30522)
"""
from uer.config import Config, ConfigError, load_config
from uer.model import Model
from uer.model_builder import build_model

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Model", "build_model", "load_config", "__version__"]
