"""GLD, text side: split a referring expression into local class nouns and global context tokens.

``decompose("the white ship next to the harbor", vocab)`` →
``local = ["ship"]``, ``global = [colour "white", relation "next to the harbor"]``.

Global token kinds and their normalised ``value``:

==========  ===========================================================================================
position    ``{"x": "left"|"right"|"center"|None, "y": "top"|"bottom"|"center"|None}``
size        ``{"extreme": "largest"|"smallest"|None, "degree": "large"|"small"|"long"|"short"|None}``
            (biggest/longest → largest, shortest → smallest; big/huge → large, tiny/little → small)
colour      the colour name, e.g. ``"white"`` (``gray`` → ``grey``)
relation    ``{"type": "near"|"above"|"below"|"left_of"|"right_of"|"between", "anchor": class|None}``
            (anchor = the first class mention after the marker, mapped to the vocabulary, else the
            singular head word of the phrase after it; "between A and B" keeps A; "the top left of
            the road" = position top-left + relation near road)
ordinal     ``{"n": 2, "direction": "left"|"right"|"top"|"bottom"|None}`` (``"last"`` → ``n = -1``)
count       ``{"n": 2 | "all"}``
other       ``None`` (any remaining descriptive word)
==========  ===========================================================================================

Tokenising and tagging use built-in rules and a lexicon, so no NLTK data is needed (none can be
downloaded here). When NLTK's perceptron tagger data is installed, ``nltk.pos_tag`` picks the head noun
of expressions whose class is not in the vocabulary. Class nouns are matched against the vocabulary's
synonyms (longest multi-word match, plurals, small misspellings via ``difflib``). Limits: an empty
expression or one over :data:`MAX_CHARS` characters is an error; an expression of only stop-words gives
``local == []`` (callers then use the whole expression); non-Latin text does not fail (its tokens become a
free noun). Without a vocabulary, or when no class matches, ``local`` holds the singular head noun of the
first noun phrase ("the old red houses" → ``["house"]``; generic "thing/object" → ``[]``).
``wants_multiple``: a plural target, "all"/"every", or a number > 1.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field

from .errors import DglrsisError

MAX_CHARS = 1000
STOP = {
    "a",
    "an",
    "the",
    "of",
    "is",
    "are",
    "was",
    "were",
    "be",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "which",
    "who",
    "in",
    "on",
    "at",
    "to",
    "by",
    "with",
    "from",
    "and",
    "or",
    "as",
    "there",
    "here",
    "image",
    "picture",
    "photo",
    "located",
    "placed",
    "situated",
    "lies",
    "lying",
    "one",
    "side",
    "part",
    "area",
}
GENERIC = {"thing", "things", "object", "objects", "item", "items", "stuff", "target", "region"}
COLOURS = {
    "white",
    "red",
    "blue",
    "green",
    "grey",
    "gray",
    "black",
    "yellow",
    "orange",
    "brown",
    "dark",
    "light",
    "silver",
    "purple",
    "pink",
    "cyan",
}
SIZE = {
    "large": ("degree", "large"),
    "larger": ("degree", "large"),
    "big": ("degree", "large"),
    "bigger": ("degree", "large"),
    "huge": ("degree", "large"),
    "small": ("degree", "small"),
    "smaller": ("degree", "small"),
    "little": ("degree", "small"),
    "tiny": ("degree", "small"),
    "long": ("degree", "long"),
    "longer": ("degree", "long"),
    "short": ("degree", "short"),
    "largest": ("extreme", "largest"),
    "biggest": ("extreme", "largest"),
    "longest": ("extreme", "largest"),
    "smallest": ("extreme", "smallest"),
    "shortest": ("extreme", "smallest"),
}
POS_X = {"left": "left", "right": "right", "leftmost": "left", "rightmost": "right"}
POS_Y = {
    "top": "top",
    "upper": "top",
    "bottom": "bottom",
    "lower": "bottom",
    "topmost": "top",
    "bottommost": "bottom",
}
CENTER = {"middle", "center", "centre", "central"}
RELATIONS = [  # longest first; (words, type)
    (("to", "the", "left", "of"), "left_of"),
    (("to", "the", "right", "of"), "right_of"),
    (("on", "the", "left", "of"), "left_of"),
    (("on", "the", "right", "of"), "right_of"),
    (("surrounded", "by"), "near"),
    (("adjacent", "to"), "near"),
    (("close", "to"), "near"),
    (("next", "to"), "near"),
    (("left", "of"), "left_of"),
    (("right", "of"), "right_of"),
    (("near",), "near"),
    (("nearby",), "near"),
    (("beside",), "near"),
    (("besides",), "near"),
    (("by",), "near"),
    (("above",), "above"),
    (("over",), "above"),
    (("below",), "below"),
    (("under",), "below"),
    (("beneath",), "below"),
    (("between",), "between"),
]
ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "1st": 1,
    "2nd": 2,
    "3rd": 3,
    "4th": 4,
    "5th": 5,
}
NUMBERS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "both": 2,
    "all": "all",
    "every": "all",
}


@dataclass
class GlobalToken:
    kind: str  # position | size | colour | relation | ordinal | count | other
    text: str  # the words of the expression it comes from
    value: object = None  # normalised form (module docstring)


@dataclass
class Decomposition:
    text: str
    local: list[str] = field(default_factory=list)
    global_: list[GlobalToken] = field(default_factory=list)
    wants_multiple: bool = False

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "local": list(self.local),
            "global": [{"kind": g.kind, "text": g.text, "value": g.value} for g in self.global_],
        }


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; hyphens split words, other punctuation is dropped."""
    toks = re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.lower().replace("-", " "))
    return [t.removesuffix("'s") for t in toks]  # possessive "ship's" → "ship"


def _singular(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _match_classes(tokens: list[str], vocab) -> list[tuple[int, int, str]]:
    """(start, end, canonical) spans of class mentions, longest match first, then fuzzy one-offs."""
    if vocab is None:
        return []
    table = {}
    for name, syns in zip(vocab.names, vocab.synonyms, strict=False):
        for s in syns:
            table.setdefault(tuple(s.split()), name)
    maxlen = max(len(k) for k in table)
    keys = {" ".join(k): v for k, v in table.items()}
    spans, i = [], 0
    sing = [_singular(t) for t in tokens]
    while i < len(tokens):
        hit = None
        for n in range(min(maxlen, len(tokens) - i), 0, -1):
            for cand in (tuple(tokens[i : i + n]), tuple(tokens[i : i + n - 1] + [sing[i + n - 1]])):
                if cand in table:
                    hit = (i, i + n, table[cand])
                    break
            if hit:
                break
        if hit is None and tokens[i] not in STOP and len(tokens[i]) > 3 and not _is_modifier(tokens[i]):
            for n in range(min(maxlen, len(tokens) - i), 0, -1):
                phrase = " ".join(sing[i : i + n])
                close = difflib.get_close_matches(phrase, keys, n=1, cutoff=0.85)
                if close:
                    hit = (i, i + n, keys[close[0]])
                    break
        if hit:
            spans.append(hit)
            i = hit[1]
        else:
            i += 1
    return spans


def _is_modifier(w: str) -> bool:
    return (
        w in COLOURS
        or w in SIZE
        or w in POS_X
        or w in POS_Y
        or w in CENTER
        or w in ORDINALS
        or w in NUMBERS
        or w in ("corner", "corners", "side", "edge")
    )


@functools.lru_cache(maxsize=1)
def _nltk_tagger():
    """``nltk.pos_tag`` when NLTK and its perceptron tagger data are installed, else None.

    Never downloads. ``import nltk`` costs about 2 s (it imports scipy.stats), so the tagger data is
    looked for in NLTK's standard data folders first and NLTK is imported only when it is there.
    """
    if not _nltk_data_folders():
        return None
    try:
        import nltk

        for res in _TAGGERS:
            try:
                nltk.data.find(res)
                return nltk.pos_tag
            except LookupError:
                continue
    except ImportError:
        pass
    return None


_TAGGERS = ("taggers/averaged_perceptron_tagger_eng", "taggers/averaged_perceptron_tagger")


def _nltk_data_folders() -> list[str]:
    """NLTK's default data folders (``$NLTK_DATA``, home, prefix, system) that hold a tagger."""
    import os
    import sys

    roots = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    roots.append(os.path.expanduser("~/nltk_data"))
    for prefix in {sys.prefix, getattr(sys, "base_prefix", sys.prefix)}:
        roots += [os.path.join(prefix, d) for d in ("nltk_data", "share/nltk_data", "lib/nltk_data")]
    roots += [f"/usr/{d}nltk_data" for d in ("share/", "local/share/", "lib/", "local/lib/")]
    return [
        r
        for r in roots
        if any(
            os.path.exists(os.path.join(r, t)) or os.path.exists(os.path.join(r, t + ".zip"))
            for t in _TAGGERS
        )
    ]


def _free_noun(tokens: list[str], used: set[int], stop_at: int) -> str | None:
    """Head noun of the first noun phrase when no vocabulary class matched."""
    cands = [
        i
        for i, t in enumerate(tokens[:stop_at])
        if i not in used
        and t not in STOP
        and not _is_modifier(t)
        and not t.isdigit()
        and not _is_verb_like(t)
    ]
    tagger = _nltk_tagger()
    if tagger and cands:
        try:
            tags = dict(enumerate(tag for _, tag in tagger(tokens)))
        except LookupError:  # data for another NLTK version: use the built-in rule
            tagger, tags = None, {}
        nouns = [i for i in cands if tags.get(i, "").startswith("NN")]
        cands = nouns or cands
    if not cands:
        return None
    head = cands[-1] if tagger is None else cands[0]
    if tagger is None:  # built-in rule: head = last content word of the first phrase (modifiers inside)
        j = cands[0]
        while (
            j + 1 < stop_at
            and j + 1 not in used
            and tokens[j + 1] not in STOP
            and not _is_verb_like(tokens[j + 1])
        ):
            j += 1
        head = max(i for i in cands if i <= j)
        start = head
        while start - 1 in cands:
            start -= 1
        word = " ".join(tokens[start : head + 1])
    else:
        word = tokens[head]
    if tokens[head] in GENERIC:
        return None
    return word[: len(word) - len(tokens[head])] + _singular(tokens[head])  # "vehicles" → "vehicle"


def decompose(text: str, vocabulary=None) -> Decomposition:
    """Split ``text`` into local class nouns and typed global tokens (module docstring)."""
    if text is None or not str(text).strip():
        raise DglrsisError("empty expression")
    if len(text) > MAX_CHARS:
        raise DglrsisError(f"expression of {len(text)} characters; at most {MAX_CHARS} are supported")
    if isinstance(vocabulary, str):
        from .vocab import load_vocabulary

        vocabulary = load_vocabulary(vocabulary)
    toks = tokenize(text)
    dec = Decomposition(text=" ".join(str(text).split()))
    spans = _match_classes(toks, vocabulary)
    used: set[int] = set()
    plural_free = False
    rel_spans = []
    i = 0
    while i < len(toks):  # relations: marker + the class mention (or free noun) after it
        for words, kind in RELATIONS:
            if tuple(toks[i : i + len(words)]) == words:
                if words[0] in ("left", "right") and i > 0 and toks[i - 1] in POS_Y:
                    i, words, kind = i + 1, ("of",), "near"  # "the top left of the road": position + near
                after = [s for s in spans if s[0] >= i + len(words)]
                nxt = (
                    after[0]
                    if after and all(t in STOP or t in NUMBERS for t in toks[i + len(words) : after[0][0]])
                    else None
                )
                if nxt is None and kind in ("left_of", "right_of", "near") and words[0] in ("on", "to", "by"):
                    break  # "on the left" is a position, "by" without an object is not a relation
                end, anchor = (nxt[1], nxt[2]) if nxt else _free_anchor(toks, i + len(words))
                rel_spans.append((i, end, kind, anchor))
                used.update(range(i, end))
                i = end - 1
                break
        i += 1
    targets = [s for s in spans if not any(r[0] <= s[0] < r[1] for r in rel_spans)]
    for s in targets:
        used.update(range(s[0], s[1]))
    first_rel = min([r[0] for r in rel_spans], default=len(toks))
    if targets:
        dec.local = list(dict.fromkeys(s[2] for s in targets))
    else:
        noun = _free_noun(toks, used | {j for r in rel_spans for j in range(r[0], r[1])}, first_rel)
        if noun:
            dec.local = [noun]
            plural_free = noun.split()[-1] not in toks
            used.update(
                i for i, t in enumerate(toks[:first_rel]) if t in noun.split() or _singular(t) in noun.split()
            )
    _modifiers(toks, used, dec)
    for start, end, kind, anchor in sorted(rel_spans):
        dec.global_.append(
            GlobalToken("relation", " ".join(toks[start:end]), {"type": kind, "anchor": anchor})
        )
    plural = any(
        toks[s[1] - 1] != _singular(toks[s[1] - 1])
        and toks[s[1] - 1]
        not in [w for syn in (vocabulary.synonyms if vocabulary else []) for w in " ".join(syn).split()]
        for s in targets
    )
    counts = [g for g in dec.global_ if g.kind == "count"]
    dec.wants_multiple = (
        plural or plural_free or any(g.value["n"] == "all" or g.value["n"] > 1 for g in counts)
    )
    return dec


def _free_anchor(toks: list[str], start: int) -> tuple[int, str | None]:
    """(end, head word) of the noun phrase after a relation marker when no class matched there."""
    end = start
    while end < len(toks) and (toks[end] in STOP or toks[end] in NUMBERS) and end - start < 3:
        end += 1
    while end < len(toks) and toks[end] not in STOP and not _is_verb_like(toks[end]):
        end += 1
    heads = [t for t in toks[start:end] if t not in STOP and not _is_modifier(t)]
    return max(end, start + 1), (_singular(heads[-1]) if heads else None)


def _modifiers(toks: list[str], used: set[int], dec: Decomposition) -> None:
    """Position, size, colour, ordinal, count and other tokens outside the class/relation spans."""
    i = 0
    while i < len(toks):
        t = toks[i]
        if i in used:
            i += 1
            continue
        if t in ORDINALS or (t == "last"):
            n = ORDINALS.get(t, -1)
            j, direction = i + 1, None
            while j < min(len(toks), i + 6):
                if toks[j] in POS_X or toks[j] in POS_Y:
                    direction = POS_X.get(toks[j]) or POS_Y.get(toks[j])
                    break
                j += 1
            end = j + 1 if direction else i + 1
            words = " ".join(toks[k] for k in range(i, end) if k not in used)
            dec.global_.append(GlobalToken("ordinal", words, {"n": n, "direction": direction}))
            used.update(range(i, end))
            i = end
            continue
        if t in POS_X or t in POS_Y or t in CENTER:
            j, x, y = i, None, None
            while j < len(toks) and (
                toks[j] in POS_X
                or toks[j] in POS_Y
                or toks[j] in CENTER
                or toks[j] in ("corner", "corners", "side", "edge", "part")
            ):
                w = toks[j]
                x = POS_X.get(w, x)
                y = POS_Y.get(w, y)
                if w in CENTER:
                    x, y = x or "center", y or "center"
                j += 1
            dec.global_.append(GlobalToken("position", " ".join(toks[i:j]), {"x": x, "y": y}))
            used.update(range(i, j))
            i = j
            continue
        if t in SIZE:
            k, v = SIZE[t]
            dec.global_.append(
                GlobalToken(
                    "size",
                    t,
                    {"extreme": v if k == "extreme" else None, "degree": v if k == "degree" else None},
                )
            )
        elif t in COLOURS:
            dec.global_.append(GlobalToken("colour", t, "grey" if t == "gray" else t))
        elif t in NUMBERS or t.isdigit():
            dec.global_.append(GlobalToken("count", t, {"n": NUMBERS.get(t, int(t) if t.isdigit() else 1)}))
        elif (
            t not in STOP
            and t not in GENERIC
            and t not in ("corner", "corners", "side", "edge")
            and re.fullmatch(r"[a-z]+", t)
            and not _is_verb_like(t)
        ):
            dec.global_.append(GlobalToken("other", t, None))
        used.add(i)
        i += 1


def _is_verb_like(w: str) -> bool:
    return w in {
        "has",
        "have",
        "can",
        "see",
        "seen",
        "shown",
        "appears",
        "parked",
        "standing",
        "sits",
        "find",
    }
