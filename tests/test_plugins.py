"""The plugin manager: real plugins registered in-process and through entry points of an
installed distribution; broken plugins are isolated; listing commands stay torch-free."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

import gaia_bench
from gaia_bench.cli import app
from gaia_bench.manager import get_registries
from tests.helpers import cli, fake_distribution

runner = CliRunner()


def _tiny_backbone(name: str) -> gaia_bench.BackboneSpec:
    def build(weights=None):
        import torch

        from gaia_bench.backbone import Backbone

        trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        return Backbone(trunk, 4, name=name)

    return gaia_bench.BackboneSpec(name=name, build=build, source="tests", input_size=16)


class ToyBackbones:
    @gaia_bench.hookimpl
    def register_backbones(self, register):
        register(_tiny_backbone("toy_net"))


def test_registered_plugin_is_listed_and_resolvable(register_plugin):
    record = register_plugin(ToyBackbones(), "toy-backbones", "gaia-bench-toy", "1.2.3")
    assert record.ok
    spec = get_registries().backbones.get("toy_net")
    assert spec.source == "tests" and spec.build().num_features == 4
    out = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"}).output
    line = next(l for l in out.splitlines() if "toy-backbones" in l)
    assert "gaia-bench-toy" in line and "1.2.3" in line and "ok" in line and "toy_net" in line
    assert "toy_net" in runner.invoke(app, ["models", "toy*"], env={"COLUMNS": "250"}).output


def test_typo_in_hook_name_is_rejected(register_plugin):
    class Typo:
        @gaia_bench.hookimpl
        def register_backbone(self, register):  # missing "s"
            register(_tiny_backbone("never"))

    record = register_plugin(Typo(), "typo-plugin")
    assert not record.ok and "register_backbone" in record.error
    assert "never" not in [s.name for s in get_registries().backbones.single_specs()]


@pytest.mark.parametrize("plugin,needle", [
    (type("Raises", (), {"register_inits": gaia_bench.hookimpl(lambda self, register: 1 / 0)})(), "ZeroDivisionError"),
    (type("WrongType", (), {"register_inits": gaia_bench.hookimpl(lambda self, register: register("x"))})(), "expected InitSpec"),
])
def test_plugin_failing_at_registration_is_broken_and_cli_still_works(register_plugin, plugin, needle):
    register_plugin(plugin, "bad-plugin")
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "broken plugin bad-plugin" in result.output and needle in result.output
    assert "random" in get_registries().inits  # the rest still registers
    assert runner.invoke(app, ["inits"]).exit_code == 0


def test_a_name_a_broken_plugin_would_have_provided_mentions_that_plugin(register_plugin):
    """(#20 §9) Not only an unrelated "did you mean": the plugin that failed, and its error."""
    class BrokenZoo:
        @gaia_bench.hookimpl
        def register_backbones(self, register):
            raise ImportError("No module named 'fancy_zoo_weights'")

    register_plugin(BrokenZoo(), "fancy-zoo")
    result = runner.invoke(app, ["run", "--model", "fancy_net_large", "--shots", "10%"], env={"COLUMNS": "250"})
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "unknown backbone 'fancy_net_large'" in text
    assert "plugin fancy-zoo (test-plugin) failed to load" in text and "fancy_zoo_weights" in text


def test_duplicate_name_marks_the_later_plugin_broken(register_plugin):
    class Dup:
        @gaia_bench.hookimpl
        def register_adaptations(self, register):
            from gaia_bench.plugins.adaptations.linear_probe import LINEAR_PROBE

            register(LINEAR_PROBE)

    register_plugin(Dup(), "dup-plugin")
    regs = get_registries()
    assert regs.adaptations.origin("linear-probe") == "gaia_bench.plugins.adaptations.linear_probe"
    from gaia_bench.manager import get_host

    assert "registered twice" in get_host().records["dup-plugin"].error


def test_entry_point_plugins_load_from_an_installed_distribution(tmp_path):
    env = fake_distribution(
        tmp_path / "site", "gaia-bench-acme", "2.0.1",
        modules={
            "acme_plugin": """
                import gaia_bench

                @gaia_bench.hookimpl
                def register_inits(register):
                    register(gaia_bench.InitSpec(name="acme-init", description="from a package",
                             initialize=lambda spec, ctx: spec.build(), weights_id=lambda spec, ctx: "acme"))
            """,
            "acme_broken": "raise ImportError('acme_broken needs libfoo')\n",
        },
        entry_points={"acme": "acme_plugin", "acme-broken": "acme_broken"},
    )
    result = cli(["plugins"], env=env)
    assert result.returncode == 0, result.stderr
    acme = next(l for l in result.stdout.splitlines() if l.startswith("│ acme "))
    assert "gaia-bench-acme" in acme and "2.0.1" in acme and "acme-init" in acme and "ok" in acme
    assert "broken plugin acme-broken" in result.stdout and "libfoo" in result.stdout
    assert "acme-init" in cli(["inits"], env=env).stdout
    blocked = cli(["plugins"], env={**env, "GAIA_BENCH_DISABLE_PLUGINS": "acme"})
    assert "acme-init" not in blocked.stdout


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["list"], ["inits"], ["adaptations"], ["tasks"], ["datasets"]])
def test_listing_commands_do_not_import_torch(args):
    code = (
        "import sys\nfrom gaia_bench.cli import app\n"
        f"try:\n    app({json.dumps(args)})\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().endswith("NO-TORCH"), out.stderr


def test_every_hook_is_documented_and_registered_by_a_builtin():
    from gaia_bench import hookspecs
    from gaia_bench.cli import plugin_commands
    from gaia_bench.manager import HOOK_KINDS, get_host

    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert sorted(hooks) == sorted([*HOOK_KINDS, "register_commands"])
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip()
    host = get_host()
    host.registries()
    plugin_commands(host)
    kinds = {k for r in host.plugins() if r.builtin for k, _ in r.provides}
    assert kinds == {kind for kind, _, _ in HOOK_KINDS.values()} | {"command"}


def test_builtins_are_found_in_the_package_tree_and_listed_in_their_declared_order():
    """A new module under plugins/ or tasks/ (outside lib/) is loaded without touching the core."""
    import importlib
    from pathlib import Path

    from gaia_bench.manager import get_host

    root = Path(__file__).resolve().parents[1]
    modules = {".".join(("gaia_bench", *p.relative_to(root).with_suffix("").parts))
               for folder in ("plugins", "tasks") for p in (root / folder).rglob("*.py")
               if p.name != "__init__.py" and "lib" not in p.parts}
    builtins = [r.name for r in get_host().plugins() if r.builtin]
    assert set(builtins) == modules
    orders = [importlib.import_module(name).PLUGIN_ORDER for name in builtins]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert builtins[:2] == ["gaia_bench.plugins.backbones.timm_backbones", "gaia_bench.plugins.backbones.gaia_checkpoints"]


class Greeter:
    """A plugin adding a command and a group of subcommands, as a third-party package would."""

    @gaia_bench.hookimpl
    def register_commands(self, cli):
        import typer

        @cli.command()
        def hello(name: str = typer.Option("world", "--name", help="who to greet")) -> None:
            """Say hello."""
            typer.echo(f"hello {name}")

        group = typer.Typer(help="Tools of the greeter plugin.")

        @group.command("count")
        def count(n: int) -> None:
            typer.echo(" ".join(str(i) for i in range(n)))

        cli.add_typer(group, name="greeter")


def test_a_plugin_adds_commands_through_register_commands(register_plugin):
    assert runner.invoke(app, ["hello"]).exit_code != 0  # not there before the plugin is
    record = register_plugin(Greeter(), "greeter-plugin")
    assert record.ok
    hello = runner.invoke(app, ["hello", "--name", "gaia"])
    assert hello.exit_code == 0 and hello.stdout == "hello gaia\n"
    assert runner.invoke(app, ["greeter", "count", "3"]).stdout == "0 1 2\n"
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "hello" in top and "Tools of the greeter plugin." in top and "pretrain" in top
    listing = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"}).stdout
    line = next(l for l in listing.splitlines() if "greeter-plugin" in l)
    assert "command" in line and "greeter, hello" in line


@pytest.mark.parametrize("plugin,needle", [
    (type("RaisesCommands", (), {"register_commands": gaia_bench.hookimpl(lambda self, cli: 1 / 0)})(), "ZeroDivisionError"),
    (type("TakesRun", (), {"register_commands": gaia_bench.hookimpl(
        lambda self, cli: cli.command("run")(lambda: None))})(), "command 'run' is registered twice"),
    (type("TakesPretrain", (), {"register_commands": gaia_bench.hookimpl(
        lambda self, cli: cli.command("pretrain")(lambda: None))})(), "gaia_bench.plugins.inits.pretrain_command"),
])
def test_a_broken_register_commands_is_isolated(register_plugin, plugin, needle):
    register_plugin(plugin, "bad-commands")
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "broken plugin bad-commands" in result.output and "command registration failed" in result.output
    assert needle in " ".join(result.output.split())
    assert runner.invoke(app, ["inits"]).exit_code == 0  # the core's commands and the built-in ones still work
    assert "Pretrain a backbone" in runner.invoke(app, ["pretrain", "--help"]).stdout


def test_a_name_two_zoos_share_resolves_by_declared_precedence_or_is_an_error(register_plugin):
    """Never by load order: the catalog declaring the higher precedence wins; equal ones are an
    error listing SOURCE:name for each; SOURCE:name always works."""
    from gaia_bench.errors import UsageError
    from gaia_bench.manager import get_registries

    def zoo(source: str, precedence: int = 0):
        spec = gaia_bench.BackboneSpec(name="twin_net", build=lambda weights=None: None, source=source)
        catalog = gaia_bench.BackboneCatalog(source=source, description="a test zoo", names=lambda: ["twin_net"],
                                             get=lambda name: spec if name == "twin_net" else None,
                                             precedence=precedence)

        class Zoo:
            @gaia_bench.hookimpl
            def register_backbones(self, register):
                register(catalog)

        return Zoo()

    register_plugin(zoo("zoo-b"), "zoo-b")
    register_plugin(zoo("zoo-a"), "zoo-a")
    backbones = get_registries().backbones
    with pytest.raises(UsageError, match="'twin_net' is in 2 zoos: zoo-b:twin_net, zoo-a:twin_net"):
        backbones.get("twin_net")
    assert backbones.get("zoo-a:twin_net").source == "zoo-a"
    register_plugin(zoo("zoo-c", precedence=5), "zoo-c")
    assert get_registries().backbones.get("twin_net").source == "zoo-c"
    assert get_registries().backbones.get("resnet50").source == "timm"  # timm declares itself the default zoo
