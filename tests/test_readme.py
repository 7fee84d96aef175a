"""The README teaches only the public API: its Python examples use ``gf.X`` names that gradflow exports."""

import importlib
import re
from pathlib import Path

import gradflow as gf

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


#: Subpackages a README example may import besides ``gradflow`` itself: the figures (``import gradflow`` loads no
#: plotting library, so they cannot be ``gf.X``) and the results they are drawn from.
FIGURE_MODULES = ("gradflow.plot.", "gradflow.sweep.results")


def test_the_readme_examples_import_only_the_top_level_package_and_the_figures():
    blocks = _python_blocks()
    assert blocks, "the README has Python examples"
    for block in blocks:
        rest = re.sub(r"^from (gradflow\.[\w.]+) import .*$",
                      lambda m: "" if m.group(1).startswith(FIGURE_MODULES) else m.group(0), block, flags=re.M)
        assert "from gradflow" not in rest and not re.search(r"\bgradflow\.\w", rest), block


def test_every_figure_function_the_readme_imports_exists():
    imports = [(m, n.strip()) for block in _python_blocks()
               for m, names in re.findall(r"^from (gradflow\.[\w.]+) import (.*)$", block, flags=re.M)
               for n in names.split(",")]
    assert imports, "the README shows how to compose figures"
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_every_name_the_readme_uses_is_exported():
    used = {name for block in _python_blocks() for name in re.findall(r"\bgf\.(\w+)", block)}
    assert used, "the README's examples use gf.X"
    assert used <= set(gf.__all__) | {"__version__"}, sorted(used - set(gf.__all__))
    for name in gf.__all__:
        assert hasattr(gf, name), name
