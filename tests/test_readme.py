"""The README's Python quick-start runs as written (in a folder holding a small synthetic world)."""

import re
from pathlib import Path

from dglrsis.eval.world import generate_world

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_has_two_commands_and_quickstart_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert len(blocks) >= 2 and "dglrsis segment" in blocks[0] and "pytest" in blocks[1]
    code = re.search(r"## Python quick-start\n\n```python\n(.*?)```", text, re.S).group(1)
    generate_world(tmp_path / "demo_world", seed=0, n=8, size=512, progress=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "(512, 512)" in out and "'local': ['storage tank']" in out


def _figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("figures", README.parent / "bench" / "figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_figures_are_generated_from_the_results_file():
    """The README's figure tables equal what bench/figures.py renders from bench/results.json."""
    fig = _figures()
    text = README.read_text()
    blocks = fig.render_blocks(fig.load_results())
    assert fig.rewrite_readme(text, blocks) == text, "README figures differ: run python bench/figures.py"
    assert {"figures", "background"} <= set(blocks)
    typed = text.replace(
        "| world-clip zero-shot crop accuracy", "| world-clip zero-shot crop accuracy (typed)"
    )
    assert fig.rewrite_readme(typed, blocks) != typed  # a hand edit inside a block is overwritten


def test_figure_templates_render_hand_computed_cases():
    import pytest

    fig = _figures()
    values = {"a": {"0.5": 0.9612, "image position": [3, 4]}, "n": 7}
    assert fig.fill("{a/0.5:.1%} of {n} ({a/image position/1})", values) == "96.1% of 7 (4)"
    entry = {"id": "x", "what": "w", "command": "c", "measured": "d", "machine": "m", "values": values}
    assert fig.render_entry({**entry, "text": "{n:d}"}) == "| w | c | 7 | d, m |"
    with pytest.raises(fig.FigureError, match="no value 'a/0.7'"):
        fig.render_entry({**entry, "text": "{a/0.7}"})  # a template naming a value the run lacks
    table = {
        "id": "t",
        "kind": "table",
        "row_keys": "val",
        "columns": {"k": "`{key}`", "v": "{val/x:.0f}", "t": "{train/x}"},
        "values": {"val": {"p": {"x": 1.4}, "q": {"x": 2.6}}, "train": {"p": {"x": 5}, "q": {"x": 6}}},
    }
    assert fig.render_entry(table).splitlines() == [
        "| k | v | t |",
        "|---|---|---|",
        "| `p` | 1 | 5 |",
        "| `q` | 3 | 6 |",
    ]
    with pytest.raises(fig.FigureError, match="exactly one"):
        fig.rewrite_readme("no block here", {"figures": "x\n"})
