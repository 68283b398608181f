"""The README's measured figures, generated from one results file (``bench/results.json``).

Every figure the README reports lives in ``bench/results.json`` as an entry::

    {"id": "gvta", "what": "...", "command": "python bench/bench_gvta.py",
     "run": ["python bench/bench_gvta.py"], "result": null,
     "measured": "2026-12-02", "machine": "CPU, 2 cores", "values": {...},
     "text": "{gradcam_cost_ratio/2:.2f} ..."}

``values`` is what the run printed (the JSON object on its last stdout line, or the JSON file named by
``result``); ``text`` is the figure cell, with ``{path:format}`` fields filled from ``values`` (``a/b/0``
walks keys and list indices; the format is Python's, e.g. ``.1%``). An entry with ``same_as`` shows
another entry's run. Entries of ``"table"`` kind render a table of their own: one row per key of
``values[row_keys]`` (``columns``: header → template over ``{key}`` and ``{SECTION/...}`` for each
section of ``values`` holding that key).

    python bench/figures.py                 # rewrite the README's generated blocks from the results file
    python bench/figures.py --check         # exit 1 when the README differs from the results file
    python bench/figures.py --record ID     # run entry ID's commands, store what they print, rewrite

``--record`` stores the run's values, today's date and this machine's description, and refuses (exit 2)
when the entry's text names a value the run no longer prints, so a stale template cannot be written.
Generated blocks sit between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` in the README.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
README = ROOT / "README.md"
FIELD = re.compile(r"\{([A-Za-z_][^{}:]*)(?::([^{}]*))?\}")
BLOCK = re.compile(r"(<!-- figures:(\w+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)


class FigureError(Exception):
    """A results file or template that cannot be rendered (one line)."""


def lookup(values, path: str):
    """``values`` at ``path`` (``a/b/0``: dict keys as strings, list items by integer index)."""
    cur = values
    for part in path.split("/"):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise FigureError(f"no value {path!r}")
    return cur


def fill(template: str, values: dict) -> str:
    """``template`` with every ``{path:spec}`` field replaced by ``format(lookup(values, path), spec)``."""

    def one(m: re.Match) -> str:
        value = lookup(values, m.group(1))
        try:
            return format(value, m.group(2) or "")
        except (TypeError, ValueError) as exc:
            raise FigureError(f"cannot format {m.group(1)}={value!r} as {m.group(2)!r}: {exc}") from None

    return FIELD.sub(one, template)


def render_entry(entry: dict) -> str:
    """One README table row (``| what | command | figure | measured |``) or a whole table."""
    try:
        if entry.get("kind") == "table":
            cols, values = entry["columns"], entry["values"]
            lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for key in lookup(values, entry["row_keys"]):
                sections = {k: v[key] for k, v in values.items() if isinstance(v, dict) and key in v}
                row = {"key": key, **sections}
                lines.append("| " + " | ".join(fill(t, row) for t in cols.values()) + " |")
            note = fill(entry.get("text", ""), entry["values"])
            return "\n".join(lines) + (f"\n\n{note}" if note else "")
        when = f"{entry['measured']}, {entry['machine']}"
        return f"| {entry['what']} | {entry['command']} | {fill(entry['text'], entry['values'])} | {when} |"
    except FigureError as exc:
        raise FigureError(f"entry {entry.get('id')!r}: {exc}") from None
    except KeyError as exc:
        raise FigureError(f"entry {entry.get('id')!r} lacks {exc}") from None


def render_blocks(results: dict) -> dict[str, str]:
    """{block name: generated markdown} from the results file's entries (in file order per block)."""
    blocks: dict[str, list[str]] = {}
    by_id = {e["id"]: e for e in results["figures"]}
    for entry in results["figures"]:
        if "same_as" in entry:
            run = by_id.get(entry["same_as"])
            if run is None:
                raise FigureError(f"entry {entry['id']!r}: same_as names no entry")
            entry = {**entry, **{k: run[k] for k in ("values", "measured", "machine")}}
        blocks.setdefault(entry.get("block", "figures"), []).append(render_entry(entry))
    out = {}
    for name, parts in blocks.items():
        if name == "figures":
            head = "| what | command | figure | measured |\n|---|---|---|---|\n"
            out[name] = head + "\n".join(parts) + "\n"
        else:
            out[name] = "\n\n".join(parts) + "\n"
    return out


def rewrite_readme(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each generated block replaced; a block the README lacks (or has twice) is an error."""
    found = [m.group(2) for m in BLOCK.finditer(text)]
    for name in blocks:
        if found.count(name) != 1:
            raise FigureError(f"README must hold exactly one <!-- figures:{name} --> block")
    for name in found:
        if name not in blocks:
            raise FigureError(f"README block {name!r} has no entry in {RESULTS.name}")
    return BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)] + m.group(4), text)


def load_results(path: Path = RESULTS) -> dict:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FigureError(f"cannot read {path}: {exc}") from None
    ids = [e.get("id") for e in results.get("figures", [])]
    if len(set(ids)) != len(ids) or None in ids:
        raise FigureError(f"{path.name}: every entry needs a unique id")
    return results


def machine() -> str:
    """This machine in words: GPU name when torch sees one, else the CPU core count."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"CPU {os.cpu_count()} cores ({platform.machine()})"


def run_entry(entry: dict, tmp: str) -> dict:
    """Run ``entry['run']`` (shell commands; ``{tmp}`` = a folder shared by the entries recorded in one
    call, so e.g. one synthetic world serves them all) and return the values printed."""
    out = ""
    for cmd in entry["run"]:
        cmd = cmd.replace("{tmp}", tmp)
        print(f"$ {cmd}", file=sys.stderr)
        done = subprocess.run(cmd, shell=True, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise FigureError(f"{cmd!r} exited {done.returncode}")
        out = done.stdout
    try:
        if entry.get("result"):
            return json.loads(Path(entry["result"].replace("{tmp}", tmp)).read_text())
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        return json.loads(lines[-1])
    except (IndexError, OSError, ValueError):
        raise FigureError(f"entry {entry['id']!r}: the run printed no JSON object") from None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the README is not up to date")
    ap.add_argument("--record", metavar="ID", action="append", default=[], help="re-measure entry ID")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="figures-")
    try:
        results = load_results()
        for rid in args.record:
            entry = next((e for e in results["figures"] if e["id"] == rid), None)
            if entry is None or not entry.get("run"):
                raise FigureError(f"no runnable entry {rid!r} in {RESULTS.name}")
            fresh = dict(entry, values=run_entry(entry, tmp.name))
            fresh["measured"] = datetime.date.today().isoformat()
            fresh["machine"] = machine()
            render_entry(fresh)  # the template still matches what the run prints
            entry.update(fresh)
        text = README.read_text(encoding="utf-8")
        new = rewrite_readme(text, render_blocks(results))
    except FigureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        tmp.cleanup()
    if args.check:
        if new != text:
            msg = "README figures differ from bench/results.json: run python bench/figures.py"
            print(f"error: {msg}", file=sys.stderr)
            return 1
        return 0
    if args.record:
        write_atomic(RESULTS, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    if new != text:
        write_atomic(README, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
