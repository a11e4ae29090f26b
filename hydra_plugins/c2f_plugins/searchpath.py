"""Adds the repository's `sweeps/` folder to Hydra's config search path."""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


class C2fSweepsSearchPath(SearchPathPlugin):
    """`python run.py -m -cn table2` finds sweeps/table2.yaml (and the sweeps/row presets)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="c2f-sweeps", path=f"file://{SWEEPS}")
