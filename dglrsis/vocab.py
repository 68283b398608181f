"""Class vocabularies, prompt templates and RS knowledge (the data in ``prompts/``, shipped as
``dglrsis.prompts``).

Vocabulary files: one class per line, synonyms comma-separated, the first name canonical; lines
starting with ``#`` are comments (SegEarth-OV convention: a class scores the max over its synonyms,
see :func:`build_prompt_groups`). Prompt composition of :func:`build_prompts`,
per class: every template × every synonym (``synonyms=False``: the canonical name only), plus, with
``knowledge=True``, one prompt per knowledge description: ``"<first template with the name>, <description>"``
(e.g. "a satellite image of a storage tank, a round white cylindrical tank seen from above").
Class names outside every bundled vocabulary are fine (open vocabulary): they get no synonyms and no
knowledge.

Class lists typed by a user (:func:`parse_classes`): ``"ship, storage tank|oil tank, car"`` — items
separated by commas, an item's own synonyms separated by ``|`` (first = canonical). Names are
normalised (lower case, ``_`` → space, single spaces). Errors: an empty list, a name given twice (after
normalisation), more than :data:`MAX_CLASSES` classes. An item without ``|`` takes its synonyms from the
bundled vocabularies (:func:`synonyms_for`); an unknown name is kept as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import DglrsisError

MAX_CLASSES = 1000  # more classes than any RS benchmark; bounds text-encoder work per query
BUNDLED = ("isaid", "rrsisd", "dlrsd", "potsdam", "vaihingen", "loveda", "uavid", "udd5", "vdd")


@dataclass
class Vocabulary:
    names: list[str]  # canonical class names
    synonyms: list[list[str]] = field(default_factory=list)  # per class, canonical first
    source: str = ""  # bundled name or file path

    def __post_init__(self):
        if not self.synonyms:
            self.synonyms = [[n] for n in self.names]


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def parse_vocabulary_text(text: str, source: str = "") -> Vocabulary:
    names, syns = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        items = [_norm(s) for s in line.split(",") if _norm(s)]
        if items:
            names.append(items[0])
            syns.append(list(dict.fromkeys(items)))
    if not names:
        raise DglrsisError(f"vocabulary {source or '(text)'} has no classes")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DglrsisError(f"vocabulary {source} lists {min(dup)!r} twice")
    return Vocabulary(names, syns, source)


def parse_classes(text: str, bundled_synonyms: bool = True) -> Vocabulary:
    """A :class:`Vocabulary` from ``"ship, storage tank|oil tank"`` (format and errors: module docstring)."""
    items = [i for i in str(text or "").split(",") if i.strip()]
    if not items:
        raise DglrsisError("empty class list: give at least one class name")
    if len(items) > MAX_CLASSES:
        raise DglrsisError(f"{len(items)} classes given; at most {MAX_CLASSES} are supported")
    names, syns = [], []
    for item in items:
        group = [_norm(s) for s in item.split("|") if _norm(s)]
        if not group:
            raise DglrsisError(f"empty class name in {item!r}")
        if group[0] in names:
            raise DglrsisError(f"class {group[0]!r} is listed twice")
        if len(group) == 1 and bundled_synonyms:
            group = synonyms_for(group[0])
        names.append(group[0])
        syns.append(list(dict.fromkeys(group)))
    return Vocabulary(names, syns, "classes")


def load_vocabulary(name_or_path: str | Path | Vocabulary) -> Vocabulary:
    """A bundled vocabulary by name (``isaid``, ``rrsisd``, …) or a vocabulary file."""
    if isinstance(name_or_path, Vocabulary):
        return name_or_path
    if name_or_path is None or not str(name_or_path).strip():
        raise DglrsisError(f"no vocabulary given: use a file or one of {', '.join(BUNDLED)}")
    key = str(name_or_path).lower()
    if key in BUNDLED:
        return _bundled(key)
    path = Path(name_or_path)
    if not path.is_file():
        raise DglrsisError(f"no vocabulary {name_or_path!r}: give a file or one of {', '.join(BUNDLED)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DglrsisError(f"cannot read vocabulary {path}: {exc}") from None
    return parse_vocabulary_text(text, str(path))


@cache
def _bundled(key: str) -> Vocabulary:
    text = resources.files("dglrsis.prompts").joinpath("vocab", f"{key}.txt").read_text(encoding="utf-8")
    return parse_vocabulary_text(text, key)


@cache
def _synonym_index() -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for key in BUNDLED:
        for group in _bundled(key).synonyms:
            for s in group:
                index.setdefault(s, group)
    return index


def synonyms_for(name: str) -> list[str]:
    """``name`` followed by its synonyms from the bundled vocabularies (just ``[name]`` if unknown)."""
    n = _norm(name)
    group = _synonym_index().get(n, [n])
    return [n] + [s for s in group if s != n]


@cache
def _knowledge() -> dict[str, list[str]]:
    data = json.loads(
        resources.files("dglrsis.prompts").joinpath("knowledge.json").read_text(encoding="utf-8")
    )
    return {_norm(k): list(v) for k, v in data.items()}


def knowledge_for(name: str) -> list[str]:
    """Short overhead-view descriptions of a class, looked up by its name or any synonym."""
    kb = _knowledge()
    for s in synonyms_for(name):
        if s in kb:
            return kb[s]
    return []


def load_templates(name_or_path: str = "rs") -> list[str]:
    """Prompt templates with ``{}``: bundled ``rs``, ``imagenet80``, ``simple`` or a file."""
    if name_or_path in ("rs", "imagenet80", "simple"):
        text = resources.files("dglrsis.prompts").joinpath("templates", f"{name_or_path}.txt").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise DglrsisError(f"no template set {name_or_path!r}: use rs, imagenet80, simple or a file")
        text = path.read_text(encoding="utf-8")
    out = [t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")]
    bad = [t for t in out if "{}" not in t]
    if not out or bad:
        raise DglrsisError(f"template set {name_or_path} needs one '{{}}' per line")
    return out


def build_prompt_groups(
    vocab: Vocabulary, templates: str = "rs", synonyms: bool = True, knowledge: bool = True
) -> list[list[list[str]]]:
    """Per class, per synonym, the prompt strings: templates × that synonym; the canonical name's group
    also gets the knowledge prompts. A class scores the max over its synonym groups (SegEarth-OV)."""
    temps = load_templates(templates)
    out = []
    for name, syns in zip(vocab.names, vocab.synonyms, strict=False):
        words = list(dict.fromkeys([name] + list(syns))) if synonyms else [name]
        groups = [[t.format(w) for t in temps] for w in words]
        if knowledge:
            head = temps[0].format(name).rstrip(".")
            groups[0] += [f"{head}, {d}" for d in knowledge_for(name)]
        out.append([list(dict.fromkeys(g)) for g in groups])
    return out


def build_prompts(
    vocab: Vocabulary, templates: str = "rs", synonyms: bool = True, knowledge: bool = True
) -> list[list[str]]:
    """Per class, the list of prompt strings (composition in the module docstring); deterministic."""
    return [
        list(dict.fromkeys(p for g in groups for p in g))
        for groups in build_prompt_groups(vocab, templates, synonyms, knowledge)
    ]
