"""What a user adds in an afternoon is taken without editing c2f: a compression method that
only compresses the features trains every model; a model's own hyperparameters are its
`model.options`, checked by its family's dataclass before anything is built; and both may live
in a package of the user's own (a `c2f.plugins` entry point, c2f/registry.py)."""
from __future__ import annotations

import importlib
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from c2f.compression import _REGISTRY as COMPRESSIONS
from c2f.compression import create_compression
from c2f.data.prepare import DATASETS
from c2f.data.prepare.__main__ import parser as prepare_parser
from c2f.flops_cache import ALL, code_version
from c2f.models import build_model, model_family
from c2f.models.registry import _REGISTRY as MODELS
from c2f.plan import build_plan
from c2f.predict import main as predict
from c2f.registry import PluginError, load_plugins, plugin_folders
from c2f.report.runs import load_run
from c2f.report.tables import label
from c2f.spec import ConfigError, build_spec
from tests.conftest import ROOT, TINY, read_metrics, run_cli, run_dirs

# A user's package: a method that keeps every C-th frame from an offset (an option of its own), a
# model with options of its own, and a dataset preparation.
PLUGIN = '''
from dataclasses import dataclass

from torch import nn

from c2f.compression import register
from c2f.compression.base import Compression, PhaseInput, divide_exactly
from c2f.data.prepare.folder import Folder
from c2f.data.prepare.registry import register_dataset
from c2f.models.registry import ModelFamily, register_model


@register_dataset
class Birdsong(Folder):
    name = "birdsong_sites"
    description = "a user's recordings: folders of sites, each with folders of species"


@dataclass(frozen=True)
class StrideOptions:
    offset: int = 0  # the first frame kept


@register("user_stride")
class FrameStride(Compression):
    title = "Frame Stride"  # its name in the report
    options = StrideOptions

    def phase_input(self, base, c):
        return PhaseInput(base.frame_shift_ms, base.target_length,
                          divide_exactly(base.target_length, c, self.name), base.patch,
                          base.time_mask // c)

    def transform(self, fbank, c):
        return fbank[..., self.own.offset % c::c, :]


@dataclass(frozen=True)
class ConvOptions:
    hidden: int = 16
    kernels: tuple[int, ...] = (3,)


class OverTime(nn.Module):
    def __init__(self, body, head):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, spec):  # [batch, frames, mel]
        return self.head(self.body(spec.transpose(1, 2)).mean(dim=2))


@register_model("user_conv")
class ConvFamily(ModelFamily):
    options = ConvOptions

    def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
        own = self.own_options(spec)
        layers, width = [], num_mel_bins
        for kernel in own.kernels:
            layers += [nn.Conv1d(width, own.hidden, kernel, padding=kernel // 2), nn.ReLU()]
            width = own.hidden
        return OverTime(nn.Sequential(*layers), nn.Linear(width, num_classes))
'''


def write_package(site, name: str, module: str, source: str, conf: dict[str, str]) -> None:
    """An installed package as pip leaves it: its module, a conf/ folder, and a dist-info
    whose entry point names the module in the `c2f.plugins` group."""
    (site / name / "conf").mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    (site / name / f"{module}.py").write_text(source)
    for path, text in conf.items():
        (site / name / "conf" / path).parent.mkdir(parents=True, exist_ok=True)
        (site / name / "conf" / path).write_text(text)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[c2f.plugins]\nmine = {name}.{module}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    write_package(site, "c2f_user", "methods", PLUGIN, {
        "compression/user_stride.yaml": "name: user_stride\noptions:\n  offset: 1\n",
        "model/user_conv.yaml": "name: user_conv\narch: user_conv\noptions:\n  hidden: 8\n"})
    return site


@pytest.fixture
def on_path(site, monkeypatch):
    """The user's package findable here (not yet imported); its registrations undone after."""
    for registry in (COMPRESSIONS, MODELS):
        registry.names()
        monkeypatch.setattr(registry, "classes", dict(registry.classes))
    datasets = set(DATASETS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "c2f_user.methods", raising=False)
    load_plugins.cache_clear(), plugin_folders.cache_clear()
    yield
    load_plugins.cache_clear(), plugin_folders.cache_clear()
    sys.modules.pop("c2f_user.methods", None)
    for name in set(DATASETS) - datasets:
        del DATASETS[name]


@pytest.fixture
def plugin(on_path):
    """The user's package imported here, its classes registered until the test ends."""
    assert load_plugins() == ("c2f_user.methods",)
    return importlib.import_module("c2f_user.methods")


def spec_for(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return build_spec(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("arch", ["cnn14", "htsat"])
def test_a_new_feature_method_is_taken_by_every_model_without_editing_it(arch, plugin):
    takes = set(model_family(arch).methods())  # and any method added to c2f/compression/
    assert takes >= {"user_stride", "fshift", "pool_avg"} and not takes & {"patch_pi", "patch_bl"}
    plan = build_plan(spec_for(f"model={arch}_tiny", "compression.name=user_stride",
                               "schedule=2phase"))
    assert [(p.method, p.c, p.input.model_frames) for p in plan.phases] == [
        ("user_stride", 4, 64), ("user_stride", 1, 256)]


def test_a_new_model_reads_its_own_options(plugin):
    spec = spec_for("model.arch=user_conv", "+model.options.hidden=24",
                    "+model.options.kernels=[5,3]", "compression=fshift", "schedule=2phase")
    assert plugin.ConvFamily().own_options(spec.model) == plugin.ConvOptions(24, (5, 3))
    plan = build_plan(spec)
    model = build_model(spec.model, num_classes=11, num_mel_bins=128, frames=64, patch=(16, 16))
    assert [tuple(m.weight.shape) for m in model.body if isinstance(m, nn.Conv1d)] == [
        (24, 128, 5), (24, 24, 3)]
    assert model(torch.zeros(2, 64, 128)).shape == (2, 11)
    # the plan's FLOPs are those of the model the options build: per frame, 2 per multiply-add
    # of both convolutions' forward and weight gradient, and the second's input gradient
    per_frame = 2 * (2 * 24 * 128 * 5 + 3 * 24 * 24 * 3)
    coarse, fine = (p.flops_per_sample for p in plan.phases)
    assert fine - coarse == (256 - 64) * per_frame
    # the options are part of the run's identity; no options and empty ones are the same run
    assert spec.run_id != spec_for("model.arch=user_conv", "+model.options.hidden=32",
                                   "+model.options.kernels=[5,3]", "compression=fshift",
                                   "schedule=2phase").run_id
    assert spec_for("+model.options={}").run_id == spec_for().run_id


def test_a_new_method_reads_its_own_options(plugin):
    spec = spec_for("compression.name=user_stride", "+compression.options.offset=1",
                    "schedule=2phase")
    method = create_compression(spec.compression.name, spec.compression.options)
    assert method.own == plugin.StrideOptions(offset=1)
    frames = torch.arange(16.0).reshape(1, 16, 1)
    assert method.transform(frames, 4).flatten().tolist() == [1.0, 5.0, 9.0, 13.0]
    assert method.transform(frames, 1).flatten().tolist() == list(range(16))
    assert build_plan(spec).phases[0].input.model_frames == 64
    assert spec.run_id != spec_for("compression.name=user_stride", "schedule=2phase").run_id
    assert spec_for("+compression.options={}").run_id == spec_for().run_id
    with pytest.raises(ConfigError, match=r"unknown key\(s\) compression.options.ofset; did you "
                       r"mean `compression.options.offset` for `ofset`\? allowed: offset"):
        build_plan(spec_for("compression.name=user_stride", "+compression.options.ofset=1"))
    with pytest.raises(ConfigError, match=r"`compression.options`: `compression=fshift` has no "
                                          r"options of its own, got offset"):
        build_plan(spec_for("compression=fshift", "+compression.options.offset=1",
                            "schedule=2phase"))


def test_a_required_option_left_out_is_named_with_where_its_line_goes():
    from dataclasses import dataclass

    from c2f.spec_types import own_options

    @dataclass(frozen=True)
    class Needs:
        width: int

    with pytest.raises(ConfigError, match=r"`compression.options.width` is missing: the "
                                          r"compression preset .* needs a line `width: ...` "
                                          r"under `options:`, or give compression.options.width"):
        own_options(Needs, (), "compression", "`compression=wide`")


def test_a_plugins_dataset_preparation_is_a_prepare_command(on_path):
    help_text = prepare_parser().format_help()  # `python -m c2f.data.prepare --help`
    assert "birdsong_sites" in help_text and "folders of sites" in help_text


def test_model_options_are_checked_before_anything_is_built(plugin):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.options.hiden; did you mean "
                       r"`model.options.hidden` for `hiden`\? allowed: hidden, kernels"):
        build_plan(spec_for("model.arch=user_conv", "+model.options.hiden=24"))
    with pytest.raises(ConfigError, match=r"`model.options.hidden`: takes an integer, got 'wide'"):
        build_plan(spec_for("model.arch=user_conv", "+model.options.hidden=wide"))
    with pytest.raises(ConfigError, match=r"`model.options`: `model.arch=ast` has no options of "
                                          r"its own, got depth; its settings are model.\* keys"):
        build_plan(spec_for("+model.options.depth=2"))


def test_a_plugin_package_trains_through_run_py(site, tmp_path, data_dir, capsys, request):
    """The user's package installed beside c2f (here: on PYTHONPATH, with its dist-info): its
    method and model are found by name, with their presets from its conf/ folder, and the
    trained model scores audio (c2f.predict) where the package is installed."""
    runs = tmp_path / "runs"
    tiny = [arg for arg in TINY if not arg.startswith("model.")]
    proc = run_cli([*tiny, "compression=user_stride", "model=user_conv", "schedule=2phase",
                    "dataset.epochs=2", "logger=disabled"], runs, data_dir,
                   env={"PYTHONPATH": str(site)})
    assert "user_stride  4" in proc.stdout, proc.stdout
    [run] = run_dirs(runs)
    assert [(r["phase"], r["C"]) for r in read_metrics(run)] == [(0, 4), (1, 1)]
    config = OmegaConf.load(run / "config.yaml")
    assert (config.model.options.hidden, config.compression.options.offset) == (8, 1)
    # the report names the method by its title, where the package is not installed too
    assert load_run(run).method == "user_stride"
    assert label("user_stride", "4-1") == "Frame Stride 4→1"
    # its model, used where the package is not installed, then where it is
    clip = str(next(data_dir.rglob("*.wav")))
    assert predict([str(run), clip]) == 2
    assert "its model cannot be built here" in capsys.readouterr().err
    request.getfixturevalue("plugin")
    assert predict([str(run), clip, "--top", "2"]) == 0
    assert "model: " in capsys.readouterr().out


def test_an_edit_to_a_plugin_keys_the_flops_cache_anew(plugin, site):
    """Anew for the plugin's method and model (and for ALL), not for c2f's own ones."""
    source = site / "c2f_user" / "methods.py"
    original = source.read_text()
    asked = [(ALL, ALL), ("user_stride", "ast"), (None, "user_conv"), ("fshift", "ast"),
             (None, "cnn14")]
    code_version.cache_clear()
    before = [code_version(*pair) for pair in asked]
    try:
        source.write_text(original.replace("hidden: int = 16", "hidden: int = 17"))
        code_version.cache_clear()
        after = [code_version(*pair) for pair in asked]
        assert [a != b for a, b in zip(after, before)] == [True, True, True, False, False]
        assert len(set(before)) == len(asked)  # each its own code
    finally:
        source.write_text(original)
        code_version.cache_clear()


def test_a_broken_plugin_is_named_with_its_package(tmp_path, monkeypatch):
    write_package(tmp_path, "c2f_broken", "methods", "import not_installed_anywhere\n", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins.cache_clear(), plugin_folders.cache_clear()
    try:
        with pytest.raises(PluginError, match=r"c2f plugin 'mine' = 'c2f_broken.methods' "
                           r"\(entry point of c2f_broken, group c2f.plugins\) failed to import: "
                           r"ModuleNotFoundError: No module named 'not_installed_anywhere'"):
            load_plugins()
    finally:
        load_plugins.cache_clear(), plugin_folders.cache_clear()


def test_a_plugin_installed_without_its_conf_folder_is_said(tmp_path, data_dir):
    """A package installed without its package-data has no conf/: Hydra's "Could not find
    'compression/user_stride'" lists the plugin's folder with why."""
    write_package(tmp_path / "site", "c2f_bare", "methods", PLUGIN, {})
    (tmp_path / "site" / "c2f_bare" / "conf").rmdir()
    proc = run_cli(["compression=user_stride", "trainer.dry_run=true"], tmp_path / "runs",
                   data_dir, check=False, env={"PYTHONPATH": str(tmp_path / "site")})
    assert proc.returncode != 0 and "Could not find 'compression/user_stride'" in proc.stderr
    assert "provider=c2f-plugin-c2f_bare (no conf/ folder here: install the plugin with its " \
           "conf/ as package-data)" in proc.stderr, proc.stderr


@pytest.fixture
def scratch_registries(monkeypatch):
    """Methods and models registered by a test, undone after it."""
    for registry in (COMPRESSIONS, MODELS):
        registry.names()
        monkeypatch.setattr(registry, "classes", dict(registry.classes))


def test_extension_mistakes_are_found_by_the_plan_not_after_a_phase(scratch_registries):
    """The plan rehearses every phase on the meta device (c2f/rehearsal.py): a transform that
    does not give the frames its phase_input promised, a model whose weights depend on the
    input length without a transfer of its own, a patch method without resize_patch_embed, a
    forward that does not return logits, and a check that forgets the method pairing are
    refused with the hook to fix, before any data is read (before, each trained its first phase
    and then crashed, or trained the "coarse" phase at full resolution)."""
    from c2f.compression import register
    from c2f.compression.base import Compression, PhaseInput, divide_exactly
    from c2f.models.registry import ModelFamily, register_model

    @register("forgot_to_compress")
    class Forgot(Compression):
        def phase_input(self, base, c):
            return PhaseInput(base.frame_shift_ms, base.target_length,
                              divide_exactly(base.target_length, c, self.name), base.patch,
                              base.time_mask // c)

    @register("pools_mel_too")
    class MelToo(Forgot):
        def transform(self, fbank, c):
            return fbank.unflatten(-2, (-1, c)).mean(-2)[..., ::2]

    @register("patch_without_resize")
    class NoResize(Compression):
        reshapes_patches = True

        def phase_input(self, base, c):
            return PhaseInput(base.frame_shift_ms, base.target_length, base.target_length,
                              (base.patch[0], base.patch[1] * c), base.time_mask)

    @register_model("flat_mlp")
    class FlatMLP(ModelFamily):
        reshapable_patches = True  # and a check that forgets nothing: validate pairs first

        def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
            return nn.Sequential(nn.Flatten(), nn.Linear(frames * num_mel_bins, num_classes))

    class TupleOut(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.head = nn.Linear(128, num_classes)

        def forward(self, spec):
            return self.head(spec.mean(1)), spec

    @register_model("tuple_out")
    class TupleFamily(ModelFamily):
        def check(self, spec, compression, phase, num_mel_bins, c):  # no super(): fine
            pass

        def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
            return TupleOut(num_classes)

    two = ["schedule=2phase", "model.embed_dim=32", "model.depth=1", "model.num_heads=2"]
    for overrides, said in (
            (["compression.name=forgot_to_compress"],
             r"`compression=forgot_to_compress` at C = 4 \(phase 0\): transform turned features "
             r"\[2, 256, 128\] into \[2, 256, 128\], but its phase_input says the model sees 64 "
             r"frames"),
            (["compression.name=pools_mel_too"],
             r"transform turned features \[2, 256, 128\] into \[2, 64, 64\]: it changed the "
             r"mel axis \(128 bins, dataset.num_mel_bins\), which a compression method keeps"),
            (["model.arch=flat_mlp", "compression=fshift"],
             r"(?s)`model.arch=flat_mlp`: moving phase 0's weights into phase 1 .*size "
             r"mismatch.* overrides ModelFamily.transfer"),
            (["compression.name=patch_without_resize"],
             r"(?s)`model.arch=ast`: moving phase 0's weights into phase 1 .*cannot move a patch "
             r"embedding from \(16, 64\) to \(16, 16\).* overrides "
             r"Compression.resize_patch_embed"),
            (["model.arch=tuple_out", "compression=fshift"],
             r"`model.arch=tuple_out`: forward returns tuple on phase 0 .*; it must return logits "
             r"\[batch, 11\]"),
            (["model.arch=tuple_out", "compression=patch_pi"],  # check() skips the base's
             r"`model.arch=tuple_out` does not support `compression=patch_pi`")):
        with pytest.raises(ConfigError, match=said):
            build_plan(spec_for(*overrides, *two))
    assert len(build_plan(spec_for("compression=pool_avg", *two)).phases) == 2  # the real ones
    with pytest.raises(ConfigError, match=r"`model.arch` is missing: the model preset 'mine' "
                                          r"\(conf/model/<preset>.yaml\) needs a line `arch:"):
        spec_for("model.name=mine", "~model.arch")
    with pytest.raises(ConfigError, match=r"`compression.name` is missing: the compression "
                                          r"preset \(conf/compression/<option>.yaml"):
        spec_for("~compression.name")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) dataset.dataset; .* needs `# "
                                          r"@package _global_` as its first line"):
        spec_for("+dataset.dataset.name=tones")  # a preset without its package line
