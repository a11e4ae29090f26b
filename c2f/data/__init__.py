"""Manifests, audio decoding and built-in offline datasets."""

from c2f.data.audio import load_waveform, pad_or_crop
from c2f.data.errors import DataError
from c2f.data.manifest import Clip, Manifest, check_files, load_manifest, read_label_csv

__all__ = [
    "Clip",
    "DataError",
    "Manifest",
    "check_files",
    "load_manifest",
    "load_waveform",
    "pad_or_crop",
    "read_label_csv",
]
