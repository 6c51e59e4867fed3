"""The plugin contract is written down and exercised (as datasette's test_plugins.py checks its
hooks): every hook documents each of its parameters and is used by a test; every field of every
spec and data type a plugin sees is documented where it is declared; every typed hook Protocol
says what it does."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from pathlib import Path

import pytest

from gaia_bench import api, hookspecs
from gaia_bench.plugins.inits.lib import pretrain_contract

TESTS = Path(__file__).parent
HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec"))
# The core's contract, and the one between an init's pretraining method and `gaia-bench pretrain`.
CLASSES = {obj.__name__: obj for module in (api, pretrain_contract) for obj in vars(module).values()
           if inspect.isclass(obj) and obj.__module__ == module.__name__}
SPECS = sorted(name for name, obj in CLASSES.items() if dataclasses.is_dataclass(obj))
PROTOCOLS = sorted(name for name, obj in CLASSES.items() if getattr(obj, "_is_protocol", False))


def _test_sources() -> str:
    return "\n".join(p.read_text() for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)


def test_the_contract_is_not_empty():
    assert len(HOOKS) >= 8 and len(SPECS) >= 10 and PROTOCOLS


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_documents_its_parameters_and_is_exercised_by_a_test(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 40, f"hook {name} needs a docstring saying what it is for"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"hook {name} does not document its parameter {param!r}"
    assert name in _test_sources(), f"no test exercises hook {name}"


def _documented_fields(cls: type) -> set[str]:
    """Fields named in the class docstring (as ``name``) or carrying a comment on or above their line."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    doc = inspect.getdoc(cls) or ""
    documented = {f.name for f in dataclasses.fields(cls) if f"``{f.name}``" in doc}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if "#" in line or above.startswith("#"):
                documented.add(node.target.id)
    return documented


@pytest.mark.parametrize("name", SPECS)
def test_every_spec_field_is_documented(name):
    cls = CLASSES[name]
    assert (inspect.getdoc(cls) or "").strip(), f"{name} needs a docstring"
    missing = sorted({f.name for f in dataclasses.fields(cls)} - _documented_fields(cls))
    assert not missing, f"{name}: document {', '.join(missing)} (in the docstring as ``name`` or a # comment)"


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_hook_protocol_says_what_it_does(name):
    cls = CLASSES[name]
    assert len(inspect.getdoc(cls) or "") > 20, f"Protocol {name} needs a docstring"
    assert any(callable(v) for k, v in vars(cls).items() if not k.startswith("_") or k == "__call__")


def test_typed_hooks_are_protocols_not_bare_callables():
    """A spec field that plugins implement says its signature in a Protocol (review §7: ``Callable[..., X]``
    hides it)."""
    hints = {name: typing.get_type_hints(CLASSES[name]) for name in SPECS}
    loose = [f"{spec}.{field}" for spec, fields in hints.items() for field, hint in fields.items()
             if "Callable[..., " in repr(hint).replace("typing.", "")]
    assert not loose, f"give these a Protocol with the real signature: {', '.join(loose)}"
