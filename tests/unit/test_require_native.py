"""``require_native``, which the C-versus-Python tests call first, fails where the C path is absent:
those tests must not pass by comparing the Python path with itself."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from services.parser import batching
from shared.domain import seqcol
from shared.parsing import native
from shared.postgres import binary_copy
from tests.unit.helpers import COMPILED, require_native

MODULES = [native, seqcol, batching, binary_copy]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_the_compiled_module_is_required_and_used(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    attribute, _ = COMPILED[module.__name__]
    assert require_native(module) is getattr(module, attribute)  # built: the C path is the one in use
    monkeypatch.setattr(module, attribute, None)  # as where the extension was not built
    with pytest.raises(pytest.fail.Exception, match="not the compiled"):
        require_native(module)
    monkeypatch.setattr(module, attribute, importlib.import_module("json"))  # some other module
    with pytest.raises(pytest.fail.Exception, match="not the compiled"):
        require_native(module)


def test_a_compiled_module_that_is_absent_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMPILED, binary_copy.__name__, ("accelerator", "shared.postgres._no_such_extension"))
    with pytest.raises(pytest.fail.Exception, match="was not built"):
        require_native(binary_copy)


def test_every_module_with_a_c_path_is_known() -> None:
    assert sorted(COMPILED) == sorted(m.__name__ for m in MODULES)
