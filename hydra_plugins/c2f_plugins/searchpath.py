"""Adds the repository's `sweeps/` folder, and the `conf/` folder of each c2f plugin
(c2f/registry.py), to Hydra's config search path."""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


class C2fSweepsSearchPath(SearchPathPlugin):
    """`python run.py -m -cn table2` finds sweeps/table2.yaml (and the sweeps/row presets);
    `compression=<a plugin's method>` finds the plugin's conf/compression/<method>.yaml."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from c2f.registry import PluginError, plugin_folders

        search_path.append(provider="c2f-sweeps", path=f"file://{SWEEPS}")
        try:
            folders = plugin_folders()
        except PluginError:
            return  # said, naming the plugin, when c2f loads its methods and models
        for folder in folders:
            # a folder without conf/ (a package installed without its package-data) is still
            # listed, so that Hydra's "Could not find 'compression/<name>'" says why
            missing = "" if (folder / "conf").is_dir() else \
                " (no conf/ folder here: install the plugin with its conf/ as package-data)"
            search_path.append(provider=f"c2f-plugin-{folder.name}{missing}",
                               path=f"file://{folder / 'conf'}")
