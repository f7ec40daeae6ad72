"""README's Python examples run as written.

A block that needs what tests cannot have (a model server, your photos)
says so on the line before its fence: `<!-- not run: <why> -->`.
"""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"(?:^|\n)([^\n]*)\n```python\n(.*?)```", README, flags=re.S)
EXAMPLES = [code for before, code in BLOCKS if not before.startswith("<!-- not run")]


def test_readme_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index, capsys):
    exec(compile(EXAMPLES[index], f"README.md example {index + 1}", "exec"), {})
    assert capsys.readouterr().out  # each example prints something
