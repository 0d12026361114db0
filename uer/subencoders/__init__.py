from uer.subencoders.registry import SUBENCODERS

__all__ = ["SUBENCODERS"]
