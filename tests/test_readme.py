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
