"""Every registered method at C = 2 and 4 through a full two-phase run on tiny real data."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.compression import list_compressions
from c2f.spec import build_spec
from c2f.track import RunDir
from c2f.train.job import run_job
from tests.conftest import ROOT, TINY

METHODS = [m for m in list_compressions() if m != "none"]


@pytest.mark.parametrize("c", [2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_two_phase_run(method, c, tmp_path, data_dir):
    overrides = [*TINY, "logger=disabled", f"compression={method}", "schedule=2phase",
                 f"schedule.c={c}", "dataset.epochs=2", f"paths.runs_dir={tmp_path}",
                 f"paths.data_dir={data_dir}"]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
    summary = run_job(spec, OmegaConf.to_yaml(cfg), echo=lambda *a: None)
    records = RunDir(spec.run_dir).read_metrics()
    assert [(r["phase"], r["C"]) for r in records] == [(0, c), (1, 1)]
    assert summary["phases"] == [c, 1] and summary["epochs"] == 2
    coarse, fine = records[0]["flops"], records[1]["flops"]
    # the coarse phase is cheaper (tiny models: prefix and head weigh)
    assert coarse < 0.6 * fine, (f"`{method}` at C = {c} costs {coarse / fine:.2f} of a full "
                                 "phase: a method that keeps the frames saves no compute; is "
                                 "that what it means to do?")
