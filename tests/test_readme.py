"""The README teaches only the public API: its Python examples use ``gf.X`` names that gradflow exports."""

import re
from pathlib import Path

import gradflow as gf

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_examples_import_only_the_top_level_package():
    blocks = _python_blocks()
    assert blocks, "the README has Python examples"
    for block in blocks:
        assert "from gradflow" not in block and not re.search(r"\bgradflow\.\w", block), block


def test_every_name_the_readme_uses_is_exported():
    used = {name for block in _python_blocks() for name in re.findall(r"\bgf\.(\w+)", block)}
    assert used, "the README's examples use gf.X"
    assert used <= set(gf.__all__) | {"__version__"}, sorted(used - set(gf.__all__))
    for name in gf.__all__:
        assert hasattr(gf, name), name
