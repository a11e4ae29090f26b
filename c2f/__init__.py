"""c2f: coarse-to-fine training of audio spectrogram transformers."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("c2f")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
