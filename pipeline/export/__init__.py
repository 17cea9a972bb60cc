"""Exports: a version's (or a group's) normalization constants in each framework's scale and
convention, and the ``preprocessor_config.json`` update."""

from .formats import FORMATS, export
from .hf import update_preprocessor_config, write_preprocessor_config
from .scales import Normalization, raw_scale, unit_scale

__all__ = [
    "FORMATS",
    "Normalization",
    "export",
    "raw_scale",
    "unit_scale",
    "update_preprocessor_config",
    "write_preprocessor_config",
]
