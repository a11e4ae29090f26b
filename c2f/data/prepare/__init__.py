"""`python -m c2f.data.prepare NAME --src DIR`: the paper's datasets (and ESC-50, Speech
Commands) from what their publishers hand out, and your own recordings (`folder`: class folders
or a CSV list), into manifests the dataset presets read.

One file per dataset registers itself with `@register_dataset`; `engine.prepare` converts the
clips (PyAV, 16 kHz mono FLAC, in parallel, resumable) and writes the manifests, labels,
statistics and reports.
"""
import importlib
import pkgutil

from c2f.data.prepare.engine import Options, Summary, prepare
from c2f.data.prepare.registry import DATASETS, DatasetRecipe, Entry, ListError, Listing

for _module in pkgutil.iter_modules(__path__):  # each registers its dataset: a new one is a file
    if not _module.name.startswith("_"):
        try:
            importlib.import_module(f"{__name__}.{_module.name}")
        except Exception as _err:  # a new file's mistake, named as a method's or model's is
            raise ImportError(f"dataset preparation c2f/data/prepare/{_module.name}.py failed "
                              f"to import: {type(_err).__name__}: {_err}; fix it or move it "
                              "out of the folder (every module there is imported)") from _err

__all__ = ["DATASETS", "DatasetRecipe", "Entry", "Listing", "ListError", "Options", "Summary",
           "prepare"]
