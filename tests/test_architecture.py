"""The layout is the architecture: layers import only downwards, no module reaches into another's private names,
and ``import gradflow`` loads no plotting library (and no optional framework)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gradflow"

#: Each layer and the gradflow layers it may import (besides itself). Top-level modules (``__init__``, ``cli``,
#: ``__main__``, ``workflows``) sit above everything.
BELOW: dict[str, set[str]] = {
    "lstm": set(),
    "flow": {"lstm"},
    "data": {"lstm"},
    "training": {"lstm", "flow", "data"},
    "sweep": set(),
    "config": {"lstm", "flow", "data", "training"},
    "profiles": {"lstm", "flow", "data", "sweep", "config"},
    "collapse": {"lstm", "flow", "data", "training", "sweep", "config"},
    "diagnose": {"lstm", "flow", "data", "training", "sweep", "config", "collapse"},
    "monitor": {"lstm", "flow", "data", "sweep"},
    "plot": {"lstm", "flow", "data", "training", "sweep", "config", "profiles", "collapse", "diagnose", "monitor"},
}
TOP = {"__init__", "__main__", "cli", "workflows"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imports(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """(imported gradflow module, names imported from it, line) for every import, at any depth of the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gradflow":
            out.append((node.module, tuple(a.name for a in node.names), node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, (), node.lineno) for a in node.names if a.name.split(".")[0] == "gradflow"]
    return out


def test_every_layer_is_a_subpackage_whose_docstring_says_what_it_owns_and_may_import():
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers == set(BELOW), "a new subpackage needs its place in BELOW (and in the README's Architecture)"
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= TOP, f"top-level modules outside the layers: {sorted(top - TOP)}"
    for layer in layers:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"gradflow/{layer}/__init__.py must say what it may import"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_only_downwards(path):
    layer = _layer(path)
    if layer in TOP:
        return
    for module, _, line in _imports(path):
        parts = module.split(".")
        target = parts[1] if len(parts) > 1 else "__init__"
        assert target == layer or target in BELOW[layer], (
            f"{path.relative_to(PACKAGE)}:{line} imports {module}: layer {layer!r} may import only "
            f"{sorted(BELOW[layer]) or 'nothing of gradflow'}"
        )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_another_modules_private_names(path):
    for module, names, line in _imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{path.relative_to(PACKAGE)}:{line} imports private {private} from {module}"


def test_importing_gradflow_loads_no_plotting_library_and_no_optional_framework():
    code = ("import sys, gradflow\n"
            "print(sorted(m for m in ('matplotlib', 'torch', 'keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_checks_themselves_catch_a_violation(tmp_path):
    """The import scan sees imports inside functions and private names (a check that cannot fail is no check)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from gradflow.plot.style import _hidden, CMAP\n    import gradflow.cli\n")
    assert _imports(sample) == [("gradflow.plot.style", ("_hidden", "CMAP"), 2), ("gradflow.cli", (), 3)]
