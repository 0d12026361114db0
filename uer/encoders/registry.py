from uer.encoders.base import Encoder
from uer.registry import Registry

ENCODERS: Registry[Encoder] = Registry("encoder")
