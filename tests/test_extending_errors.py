"""A newcomer's model or method with a mistake, or one the plan's meta-device rehearsal
cannot run, gets one line that names it, where it is and the fix (or, when nothing is wrong
with it, a plan): the errors of the "add your own model or method" recipe of the README."""
from __future__ import annotations

import re
import subprocess

import pytest
import torch
from torch import nn

from c2f.plan import build_plan
from c2f.spec import ConfigError
from c2f.train.flops import training_flops
from tests.conftest import ROOT, TINY, cli_env, run_cli, run_dirs
from tests.test_extending import (  # noqa: F401  (scratch_registries: a fixture)
    PLUGIN,
    scratch_registries,
    spec_for,
    write_package,
)
from tests.warm_python import run_python

pytestmark = pytest.mark.usefixtures("scratch_registries")  # registrations undone after
TWO = ["schedule=2phase", "compression=fshift"]


class Convolves(nn.Module):
    """A small convolutional model over time: its cost is proportional to the frames."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv1d(128, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, spec):  # [batch, frames, mel]
        return self.head(self.conv(spec.transpose(1, 2)).mean(dim=2))


class Reads(Convolves):
    """The same, with a forward that reads a value (a host sync)."""

    def forward(self, spec):
        x = self.conv(spec.transpose(1, 2))
        if x.abs().max().item() > 1e9:  # what the meta device cannot run
            x = x * 0
        return self.head(x.mean(dim=2))


def _register(name: str, module: type, **flags) -> None:
    """A model family registered as `name` whose `build` gives `module`, with class `flags`."""
    from c2f.models.registry import ModelFamily, register_model

    def build(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):
        return module(num_classes)
    register_model(name)(type(f"{name}_family", (ModelFamily,), {"build": build, **flags}))


def test_a_model_the_meta_device_cannot_run_is_planned_on_a_real_batch():
    _register("reads_a_value", Reads)
    plan = build_plan(spec_for("model.arch=reads_a_value", *TWO))
    counted = [training_flops(Reads(11), torch.zeros(3, frames, 128)) // 3
               for frames in (64, 256)]  # as the loop counts them, on a real batch
    assert [p.flops_per_sample for p in plan.phases] == counted


def test_a_family_without_build_is_named():
    from c2f.models.registry import ModelFamily, register_model

    @register_model("no_build")
    class NoBuildFamily(ModelFamily):
        def buld(self, spec, *, num_classes, num_mel_bins, frames, patch, c=1):  # a typo
            return nn.Linear(128, num_classes)

    with pytest.raises(ConfigError, match=r"^`model.arch=no_build`: NoBuildFamily "
                                          r"\(.*test_extending_errors.py\) does not define "
                                          r"`build`.*README"):
        build_plan(spec_for("model.arch=no_build", *TWO))


def test_a_forward_left_unwritten_is_not_taken_for_a_meta_device_limit():
    class Todo(Convolves):
        def forward(self, spec):
            raise NotImplementedError("TODO")

    _register("todo", Todo)
    with pytest.raises(ConfigError, match=r"`model.arch=todo` fails on phase 0 .*"
                                          r"NotImplementedError: TODO"):
        build_plan(spec_for("model.arch=todo", *TWO))


class Pooled(Convolves):
    """A model whose cost does not depend on its input's length or patch: it pools the input
    to a fixed size first (as HTS-AT's official code stretches every input to 1024 frames)."""

    def forward(self, spec):
        return super().forward(nn.functional.adaptive_avg_pool1d(spec.transpose(1, 2),
                                                                 64).transpose(1, 2))


def test_a_model_that_reshapes_patches_but_has_none_is_refused():
    _register("conv_reshapable", Convolves, reshapable_patches=True)
    with pytest.raises(ConfigError, match=r"^`model.arch=conv_reshapable` sets "
                                          r"reshapable_patches = True but not patches = True"):
        build_plan(spec_for("model.arch=conv_reshapable", "compression=patch_pi",
                            "schedule=2phase"))
    assert len(build_plan(spec_for("model.arch=conv_reshapable", *TWO)).phases) == 2


@pytest.mark.parametrize(("flags", "method"), [
    ({"reshapable_patches": True, "patches": True}, "patch_pi"),  # ignores `patch`
    ({}, "fshift"),  # ignores the input's length
])
def test_a_coarse_phase_that_costs_as_much_as_the_fine_one_is_refused(flags, method):
    _register("fixed_cost", Pooled, **flags)
    with pytest.raises(ConfigError, match=r"^`model.arch=fixed_cost` with "
                                          rf"`compression={method}`: phase 0 at C = 4 is "
                                          r"predicted to cost [\d,]+ FLOPs per sample, as much "
                                          r"as phase 1 at C = 1: the model ignores"):
        build_plan(spec_for("model.arch=fixed_cost", f"compression={method}",
                            "schedule=2phase"))


def test_weights_saved_by_other_code_of_the_model_are_said_in_one_line(tmp_path, data_dir):
    """The model's code edited after training (a layer renamed): resuming, predict and
    evaluate on the run, and predict on its exported file, say which names differ and the ways
    out, in one line (they raised load_state_dict's traceback)."""
    site, runs = tmp_path / "site", tmp_path / "runs"
    write_package(site, "c2f_user", "methods", PLUGIN, {
        "model/user_conv.yaml": "name: user_conv\narch: user_conv\noptions:\n  hidden: 8\n"})
    env = {"PYTHONPATH": str(site)}
    args = [*(a for a in TINY if not a.startswith("model.")), "model=user_conv",
            "compression=fshift", "schedule=2phase", "dataset.epochs=2", "logger=disabled"]
    run_cli(args, runs, data_dir, env=env)
    [run] = run_dirs(runs)
    clip = next(data_dir.rglob("*.wav"))

    def use(*command: str) -> subprocess.CompletedProcess:
        return run_python(list(map(str, command)), ROOT, cli_env(env), timeout=300)
    assert use("-m", "c2f.export", run, "--out", tmp_path / "model.pt").returncode == 0
    source = site / "c2f_user" / "methods.py"
    source.write_text(source.read_text().replace("self.head", "self.classifier"))
    differ = (r"the saved weights do not fit `model.arch=user_conv` as its code builds it "
              r"now \(its code changed since they were saved\): not in the model: head.bias, "
              r"head.weight; missing from the weights: classifier.bias, classifier.weight; ")
    for command, way_out in (
            (["-m", "c2f.predict", run, clip], "restore the code it was trained with"),
            (["-m", "c2f.evaluate", run], "restore the code it was trained with"),
            (["-m", "c2f.predict", tmp_path / "model.pt", clip],
             "restore the code it was trained with")):
        proc = use(*command)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert re.search(differ + way_out, proc.stderr), proc.stderr
    (run / "summary.json").unlink()  # unfinished: the same command resumes it
    proc = run_cli(args, runs, data_dir, env=env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(rf"run {run.name}: " + differ + r"restore the code it was trained with, "
                     r"or train it anew: delete .* or add group=<name>", proc.stderr), proc.stderr


def test_a_name_registered_twice_names_both_files_and_which_is_c2fs(tmp_path, monkeypatch):
    """A new file that registers a name c2f's own file registers: the clash names both files,
    says which is c2f's own and that the other is to be renamed (it blamed the file that
    imported second, c2f's own pool.py here, and said "failed to import; move it out")."""
    from c2f.registry import DuplicateName, Registry

    package = tmp_path / "clashing"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from c2f.registry import Registry\n"
        "REGISTRY = Registry('clashing', 'compression', object, own=('pool',))\n")
    for module, cls in (("median", "Median"), ("pool", "MaxPool")):  # median.py imports first
        (package / f"{module}.py").write_text(
            f"from clashing import REGISTRY\n\n\n@REGISTRY.register('pool_max')\n"
            f"class {cls}:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import clashing

    assert isinstance(clashing.REGISTRY, Registry)
    with pytest.raises(DuplicateName, match=r"^compression `pool_max` is registered by both "
                                            r"\S+/clashing/median.py and \S+/clashing/pool.py "
                                            r"\(c2f's own\): rename yours \(every module"):
        clashing.REGISTRY.names()


def test_the_modules_c2f_ships_are_known_to_their_registry():
    """The modules a clash's message calls c2f's own register c2f's methods and models."""
    from c2f.compression import _REGISTRY as COMPRESSIONS
    from c2f.models.registry import _REGISTRY as MODELS

    for registry in (COMPRESSIONS, MODELS):
        registry.names()
        registering = {cls.__module__ for cls in registry.classes.values()}
        assert {f"{registry.package}.{module}" for module in registry.own} <= registering


@pytest.mark.parametrize("decorator, clash, kind, own, init", [
    ('@register("user_stride")', '@register("pool_max")', "compression", "compression/pool.py",
     False),
    ('@register_model("user_conv")', '@register_model("cnn14")', "model", "models/cnn14.py",
     False),
    ('@register("user_stride")', '@register("pool_max")', "compression", "compression/pool.py",
     True)])
def test_a_plugin_that_registers_a_name_of_c2fs_is_told_to_rename_it(tmp_path, data_dir,
                                                                     decorator, clash, kind, own,
                                                                     init):
    """Whichever registry a run asks first (run.py reads the models' before the methods'),
    and also when the plugin's package imports its module in its __init__ (Hydra's search
    path finds the plugin's folder first), c2f's own names register before any plugin's, so
    the plugin is named."""
    write_package(tmp_path / "site", "c2f_clash", "methods", PLUGIN.replace(decorator, clash),
                  {})
    if init:
        (tmp_path / "site" / "c2f_clash" / "__init__.py").write_text("from . import methods\n")
    proc = run_cli(["trainer.dry_run=true"], tmp_path / "runs", data_dir, check=False,
                   env={"PYTHONPATH": str(tmp_path / "site")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    name = clash.split('"')[1]
    assert re.search(rf"^error: c2f plugin 'mine' = 'c2f_clash.methods' \(entry point of "
                     rf"c2f_clash, group c2f.plugins\): {kind} `{name}` is registered by "
                     rf"both \S+/c2f_clash/methods.py and c2f/{own} \(c2f's own\): "
                     r"rename yours$", proc.stderr, re.M), proc.stderr


def test_a_module_imported_again_registers_its_classes_again_without_a_clash():
    """A plugin that failed partway through its import (a missing dependency) and is
    imported again, in a notebook say, defines its classes anew: the same name from the same
    definition is no clash; another definition is."""
    from c2f.models.registry import ModelFamily, register_model

    def define(name: str):
        class Family(ModelFamily):
            pass
        return register_model(name)(Family)

    first = define("imported_twice")
    again = define("imported_twice")
    assert again is not first
    from c2f.models.registry import model_family

    assert type(model_family("imported_twice")) is again

    class Family(ModelFamily):  # another definition (qualified name) under that name
        pass
    from c2f.registry import DuplicateName

    with pytest.raises(DuplicateName, match="`imported_twice` is registered by both"):
        register_model("imported_twice")(Family)


def test_an_error_in_a_models_code_names_its_line_and_the_fix_that_fits():
    """A typo in the forward is named with its file and line and "fix the model"; only a
    shape error keeps the hint to refuse such shapes in check."""
    class Typo(Convolves):
        def forward(self, spec):
            return self.haed(spec.mean(dim=1))

    class Small(Convolves):  # a kernel larger than the coarse phase's frames
        def __init__(self, num_classes):
            super().__init__(num_classes)
            self.conv = nn.Conv1d(128, 8, 100)

    _register("typo", Typo)
    _register("small", Small)
    line = Typo.forward.__code__.co_firstlineno + 1
    with pytest.raises(ConfigError, match=rf"`model.arch=typo` fails on phase 0 .*: "
                                          rf"AttributeError: 'Typo' object has no attribute "
                                          rf"'haed' \(at \S*test_extending_errors.py:{line}\); "
                                          r"fix the model's build or forward there$"):
        build_plan(spec_for("model.arch=typo", *TWO))
    line = Convolves.forward.__code__.co_firstlineno + 1
    with pytest.raises(ConfigError, match=rf"`model.arch=small` fails on phase 0 .*: "
                                          rf"RuntimeError: .*Kernel size.* \(at \S*"
                                          rf"test_extending_errors.py:{line}\); refuse such "
                                          r"shapes in its check \(ModelFamily.check\)"):
        build_plan(spec_for("model.arch=small", "compression=fshift", "schedule=custom",
                            "schedule.phases=[32,1]"))


def test_a_module_that_fails_to_import_names_its_line(tmp_path, monkeypatch):
    from c2f.registry import PluginError, Registry

    package = tmp_path / "broken_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text("import dataclasses\n\n\noptions = MineOption\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"model module \S+/mine.py failed to import: "
                                          r"NameError: name 'MineOption' is not defined \(at "
                                          r"\S+/broken_models/mine.py:4\); fix it"):
        Registry("broken_models", "model", object).names()


def test_a_method_that_writes_transform_but_not_phase_input_is_told_to_write_it():
    from c2f.compression import register
    from c2f.compression.base import Compression

    @register("only_transform")
    class OnlyTransform(Compression):
        def transform(self, fbank, c):
            return fbank[..., ::c, :]

    with pytest.raises(ConfigError, match=r"`compression=only_transform` at C = 4: compression "
                                          r"`only_transform` overrides transform but not "
                                          r"phase_input, which says what the model sees at C > 1 "
                                          r".*copy _TimePool.phase_input from "
                                          r"c2f/compression/pool.py"):
        build_plan(spec_for("compression.name=only_transform", "schedule=2phase"))


def test_a_forgotten_decorator_or_a_subfolder_is_said_whatever_the_files_name(tmp_path,
                                                                               monkeypatch):
    """The hint for a class that registers nothing fired only for a file named after the
    model; a file in a subfolder (never imported) got the hint to install a plugin."""
    package = tmp_path / "user_models"
    (package / "mine").mkdir(parents=True)
    (package / "__init__.py").write_text("from c2f.registry import Registry\n\n\n"
                                         "class Family:\n    pass\n\n\n"
                                         "REGISTRY = Registry('user_models', 'model', Family)\n")
    (package / "my_cnn.py").write_text("from user_models import Family\n\n\n"
                                       "class ConvNetFamily(Family):  # no decorator\n"
                                       "    pass\n")
    (package / "mine" / "convnet.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    from user_models import REGISTRY

    said = REGISTRY.unknown("convnet")
    assert re.search(r"unknown model 'convnet'; \S+/user_models/my_cnn.py defines "
                     r"ConvNetFamily but registers nothing: decorate its class with "
                     r"@register_model\('convnet'\)", said), said
    assert re.search(r"modules in subfolders of \S+/user_models/ are not imported "
                     r"\(mine/\): move the file up", said), said


def test_a_required_option_left_out_names_the_preset():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Needs:
        width: int

    _register("needs_width", Convolves, options=Needs)
    with pytest.raises(ConfigError, match=r"^`model.options.width` is missing: the model preset "
                                          r"'mine' \(conf/model/<preset>.yaml, its `name: mine`\)"
                                          r" needs a line `width: ...` under `options:`"):
        build_plan(spec_for("model.arch=needs_width", "model.name=mine", *TWO))


def test_a_familys_own_key_at_the_top_of_its_preset_is_told_to_go_under_options():
    """`width: 16` written beside `arch:` instead of under `options:`; a mistyped key of the
    preset gets the closest one."""
    with pytest.raises(ConfigError, match=r"^unknown key\(s\) model.blocks, model.width; "
                                          r"allowed: .* \(a model family's or method's own keys "
                                          r"go under `model.options:`\)$"):
        spec_for("+model.width=16", "+model.blocks=4")
    with pytest.raises(ConfigError, match=r"^unknown key\(s\) model.optoins; did you mean "
                                          r"`model.options` for `optoins`\? allowed: "):
        spec_for("+model.optoins.width=16")


def test_an_architecture_key_the_model_does_not_read_is_refused_on_the_command_line(tmp_path):
    """`model=cnn14_tiny +model.depth=4` would split runs and report rows, training the same
    CNN: refused, naming the models that read the key and where the family's own keys go.
    The quick path `model.arch=<yours>` on the default AST preset keeps AST's keys: allowed."""
    from dataclasses import dataclass

    from c2f.models.registry import refuse_unread_overrides

    @dataclass(frozen=True)
    class Widths:
        width: int = 8
        blocks: int = 2

    _register("own_keys", Convolves, options=Widths)
    with pytest.raises(ConfigError, match=r"^`model.depth=4`: model.arch=own_keys does not read "
                                          r"model.depth \(a key of ast\): .* remove it \(own_keys "
                                          r"reads none of these keys; its own keys go under "
                                          r"model.options \(width, blocks\)\)$"):
        refuse_unread_overrides("own_keys", ["compression=fshift", "model.depth=4"])
    refuse_unread_overrides("own_keys", ["model.arch=own_keys", "model.options.width=4",
                                         "model.pretrained=/w.pth", "~model.depth"])
    refuse_unread_overrides("ast", ["model.depth=4", "+model.pool=tokens"])
    refuse_unread_overrides("htsat", ["model.depths=[2,2]", "model.embed_dim=48"])
    _register("own_patches", Convolves, patches=True)  # builds its tokens from build's patch
    refuse_unread_overrides("own_patches", ["model.patch=[8,8]"])
    proc = run_cli(["model=cnn14_tiny", "+model.embed_dim=4", "trainer.dry_run=true",
                    "logger=disabled"], tmp_path / "runs", tmp_path / "data", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: `+model.embed_dim=4`: model.arch=cnn14 does not read model.embed_dim (a key " \
        "of ast, htsat)" in proc.stderr
    assert "(cnn14 reads model.channels)" in proc.stderr
