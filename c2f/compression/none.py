"""`none`: full resolution only (the single-phase baseline)."""
from c2f.compression import register
from c2f.compression.base import Compression


@register("none")
class NoCompression(Compression):
    """C = 1 only."""

    title = "Baseline"
