"""Models (one file per family, registered with `@register_model`) and what moves between
phases."""
from c2f.models.ast import AST
from c2f.models.build import build_model
from c2f.models.registry import ModelFamily, list_models, model_family, register_model
from c2f.models.weights_file import loaded_note

__all__ = ["AST", "ModelFamily", "build_model", "list_models", "loaded_note", "model_family",
           "register_model"]
