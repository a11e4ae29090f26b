"""What `hydra.launcher.snapshot=true` needs of the launch folder (plugins' environ.py): on
Python < 3.11 (no PYTHONSAFEPATH) the jobs' `python -m` puts it first on sys.path."""
from __future__ import annotations

import sys

from hydra_plugins.c2f_plugins.environ import shadowed_by_launch_folder
from tests.conftest import ROOT


def test_the_repository_as_launch_folder_shadows_the_snapshot_only_before_python_3_11():
    expected = ["run.py", "c2f", "hydra_plugins"] if sys.version_info < (3, 11) else []
    assert shadowed_by_launch_folder(ROOT) == expected


def test_a_folder_without_the_code_shadows_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    assert shadowed_by_launch_folder(tmp_path) == []
