"""Models and the weight transfer between phases."""
from c2f.models.ast import AST
from c2f.models.build import build_model
from c2f.models.transfer import transfer_weights

__all__ = ["AST", "build_model", "transfer_weights"]
