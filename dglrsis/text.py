"""GLD, text side: split a referring expression into local class nouns and global context tokens.

``decompose("the white ship next to the harbour", vocab)`` →
``local = ["ship"]``, ``global = [colour "white", relation "next to the harbor"]``.

Global token kinds and their normalised ``value``:

============  =========================================================================================
position      ``{"x": "left"|"right"|"center"|None, "y": "top"|"bottom"|"center"|None}``; compass
              words count (north/northern → top, south-east → right + bottom), and so does "… of the
              image/picture/scene/photo" ("on the left of the image" is a position, not a relation)
size          ``{"extreme": "largest"|"smallest"|None, "degree": "large"|"small"|"long"|"short"|None}``
              (biggest/longest → largest, shortest → smallest; big/huge → large, tiny/little → small)
colour        the colour name, e.g. ``"white"`` (``gray`` → ``grey``)
relation      ``{"type", "anchor", "anchor_kind", "anchor_text"}``: ``type`` near | on (on/in/at/
              inside) | across (across/over/crossing) | above | below | left_of | right_of | between
              (north of → above, west of → left_of); ``anchor`` the noun phrase after the marker:
              a class of the vocabulary (``anchor_kind = "class"``), else a land cover of
              :data:`LANDCOVER` (``"landcover"``: road, river, shore, pier, trees, residential area …),
              else the singular head of the phrase (``"thing"``: "the helipad" → ``helipad``);
              ``anchor_text`` the words as written. "between A and B" adds ``anchor2``; "the top left
              of the road" = position top-left + relation near road
ordinal       ``{"n": 2, "direction": "left"|"right"|"top"|"bottom"|None}`` (``"last"`` → ``n = -1``)
multiplicity  ``{"n": 2 | "all" | "some"}``: numerals ("two", "3", "both"), "all"/"every"/"each",
              "several"/"many", and a plural target noun without a number (``"some"``)
other         ``None`` (any remaining descriptive word)
============  =========================================================================================

Class nouns are matched against the vocabulary's synonyms (longest multi-word match, plurals, small
misspellings via ``difflib``); when none matches, or without a vocabulary, the synonyms of every bundled
vocabulary are tried and the phrase itself is the noun ("the expressway service area" →
``["expressway service area"]`` whatever the vocabulary). British spellings are read as American ones
(:data:`BRITISH`: colour, harbour, centre, aeroplane …; ``grey`` is the canonical colour).

Tokenising and tagging use built-in rules and a lexicon, so no NLTK data is needed (none is downloaded).
When NLTK's perceptron tagger data is installed, ``nltk.pos_tag`` picks the head noun of expressions
whose class is in no vocabulary. Limits: an empty expression or one over :data:`MAX_CHARS` characters is
an error; an expression of only stop-words gives ``local == []``; non-Latin text does not fail (its tokens
become a free noun) but :attr:`Decomposition.referable` is False for it, for stop-words only, emoji, and
text with no word of the built-in English lexicon (callers refuse those as usage errors). Without a
class, ``local`` holds the singular head noun of the first noun phrase ("the old red houses" →
``["house"]``; generic "thing/object" → ``[]``). ``wants_multiple``: a multiplicity token asking for
more than one.
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
POS_X.update({"east": "right", "eastern": "right", "west": "left", "western": "left"})
POS_X.update({"easternmost": "right", "westernmost": "left"})
POS_Y.update({"north": "top", "northern": "top", "south": "bottom", "southern": "bottom"})
POS_Y.update({"northernmost": "top", "southernmost": "bottom"})
COMPASS = {  # one-word compass points → (x, y)
    "northeast": ("right", "top"),
    "northwest": ("left", "top"),
    "southeast": ("right", "bottom"),
    "southwest": ("left", "bottom"),
    "northeastern": ("right", "top"),
    "northwestern": ("left", "top"),
    "southeastern": ("right", "bottom"),
    "southwestern": ("left", "bottom"),
}
PLACE = {"corner", "corners", "side", "sides", "edge", "edges", "part", "half", "portion", "end", "hand"}
COMPASS_ADJ = {"northern", "southern", "eastern", "western"}  # "the southern coast": part of the anchor
IMAGE_WORDS = {"image", "picture", "photo", "photograph", "scene", "frame", "view", "map", "tile"}
BRITISH = {  # British → American spelling (classes and words are matched in American spelling)
    "colour": "color",
    "colours": "colors",
    "coloured": "colored",
    "harbour": "harbor",
    "harbours": "harbors",
    "centre": "center",
    "centres": "centers",
    "aeroplane": "airplane",
    "aeroplanes": "airplanes",
    "neighbouring": "neighboring",
    "neighbour": "neighbor",
    "metre": "meter",
    "kerb": "curb",
    "storey": "story",
    "tyre": "tire",
    "greyish": "grey",
    "grayish": "grey",
}
RELATIONS = [  # (words, type); matched longest first
    (("to", "the", "left", "of"), "left_of"),
    (("to", "the", "right", "of"), "right_of"),
    (("on", "the", "left", "of"), "left_of"),
    (("on", "the", "right", "of"), "right_of"),
    (("to", "the", "north", "of"), "above"),
    (("to", "the", "south", "of"), "below"),
    (("to", "the", "east", "of"), "right_of"),
    (("to", "the", "west", "of"), "left_of"),
    (("on", "top", "of"), "on"),
    (("in", "front", "of"), "near"),
    (("at", "the", "edge", "of"), "near"),
    (("on", "the", "edge", "of"), "near"),
    (("on", "the", "side", "of"), "near"),
    (("surrounded", "by"), "near"),
    (("adjacent", "to"), "near"),
    (("close", "to"), "near"),
    (("next", "to"), "near"),
    (("left", "of"), "left_of"),
    (("right", "of"), "right_of"),
    (("north", "of"), "above"),
    (("south", "of"), "below"),
    (("east", "of"), "right_of"),
    (("west", "of"), "left_of"),
    (("near",), "near"),
    (("nearby",), "near"),
    (("beside",), "near"),
    (("besides",), "near"),
    (("by",), "near"),
    (("along",), "near"),
    (("alongside",), "near"),
    (("around",), "near"),
    (("among",), "on"),
    (("amid",), "on"),
    (("amongst",), "on"),
    (("behind",), "near"),
    (("surrounding",), "near"),
    (("above",), "above"),
    (("below",), "below"),
    (("under",), "below"),
    (("underneath",), "below"),
    (("beneath",), "below"),
    (("between",), "between"),
    (("across",), "across"),
    (("over",), "across"),
    (("crossing",), "across"),
    (("spanning",), "across"),
    (("through",), "across"),
    (("on",), "on"),
    (("in",), "on"),
    (("inside",), "on"),
    (("within",), "on"),
    (("at",), "on"),
    (("onto",), "on"),
]
RELATIONS.sort(key=lambda r: -len(r[0]))
LANDCOVER = {  # land-cover / stuff phrases usable as relation anchors → canonical name
    "road": "road",
    "street": "road",
    "highway": "road",
    "motorway": "road",
    "expressway": "road",
    "lane": "road",
    "avenue": "road",
    "river": "river",
    "stream": "river",
    "canal": "river",
    "water": "water",
    "lake": "water",
    "pond": "water",
    "reservoir": "water",
    "sea": "sea",
    "ocean": "sea",
    "bay": "sea",
    "shore": "shore",
    "shoreline": "shore",
    "coast": "shore",
    "coastline": "shore",
    "bank": "shore",
    "riverbank": "shore",
    "waterfront": "shore",
    "beach": "beach",
    "sand": "beach",
    "pier": "pier",
    "jetty": "pier",
    "dock": "pier",
    "wharf": "pier",
    "quay": "pier",
    "tree": "trees",
    "trees": "trees",
    "forest": "trees",
    "woods": "trees",
    "woodland": "trees",
    "vegetation": "vegetation",
    "grass": "grass",
    "grassland": "grass",
    "lawn": "grass",
    "meadow": "grass",
    "farmland": "farmland",
    "cropland": "farmland",
    "field": "field",
    "fields": "field",
    "farm land": "farmland",
    "residential area": "residential area",
    "residential district": "residential area",
    "residential buildings": "residential area",
    "houses": "residential area",
    "industrial area": "industrial area",
    "building": "building",
    "buildings": "building",
    "parking lot": "parking lot",
    "car park": "parking lot",
    "parking area": "parking lot",
    "parking": "parking lot",
    "runway": "runway",
    "taxiway": "runway",
    "apron": "apron",
    "railway": "railway",
    "railroad": "railway",
    "rail track": "railway",
    "railway track": "railway",
    "bare land": "bare land",
    "bare soil": "bare land",
    "desert": "bare land",
    "snow": "snow",
    "mountain": "mountain",
    "hill": "mountain",
}
_LC_KEYS = {tuple(k.split()): v for k, v in LANDCOVER.items()}
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
    "each": "all",
    "several": "some",
    "many": "some",
    "multiple": "some",
    "numerous": "some",
    "some": "some",
}


@dataclass
class GlobalToken:
    kind: str  # position | size | colour | relation | ordinal | multiplicity | other
    text: str  # the words of the expression it comes from
    value: object = None  # normalised form (module docstring)


@dataclass
class Decomposition:
    text: str
    local: list[str] = field(default_factory=list)
    global_: list[GlobalToken] = field(default_factory=list)
    wants_multiple: bool = False
    english: bool = True  # at least one word of the built-in English lexicon or a class name

    @property
    def referable(self) -> bool:
        """True when there is something to look for: a class noun, or a position/size/colour/relation/
        ordinal token ("the thing on the left"); False for stop-words only, emoji or non-English text."""
        cues = {"position", "size", "colour", "relation", "ordinal"}
        return self.english and bool(self.local or any(g.kind in cues for g in self.global_))

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "local": list(self.local),
            "global": [{"kind": g.kind, "text": g.text, "value": g.value} for g in self.global_],
            "multiple": self.wants_multiple,
        }


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens in American spelling; hyphens split words, other punctuation is dropped."""
    toks = re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.lower().replace("-", " "))
    return [BRITISH.get(t, t) for t in (t.removesuffix("'s") for t in toks)]  # "ship's" → "ship"


def _singular(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _class_table(vocab) -> dict[tuple[str, ...], str]:
    """Synonym word tuple → canonical name; ``vocab=None``: every bundled vocabulary's synonyms, each
    mapped onto itself (the phrase is the noun)."""
    if vocab is None:
        return _bundled_table()
    table: dict[tuple[str, ...], str] = {}
    for name, syns in zip(vocab.names, vocab.synonyms, strict=False):
        for s in syns:
            table.setdefault(tuple(tokenize(s)), name)
    return table


@functools.lru_cache(maxsize=1)
def _bundled_table() -> dict[tuple[str, ...], str]:
    from .vocab import BUNDLED, load_vocabulary

    table: dict[tuple[str, ...], str] = {}
    for key in BUNDLED:
        for syns in load_vocabulary(key).synonyms:
            for s in syns:
                words = tuple(tokenize(s))
                if words and words[-1] not in ("background", "clutter", "other"):
                    table.setdefault(words, " ".join(words[:-1] + (_singular(words[-1]),)))
    return table


def _match_classes(tokens: list[str], vocab, fuzzy: bool = True) -> list[tuple[int, int, str]]:
    """(start, end, canonical) spans of class mentions, longest match first, then fuzzy one-offs."""
    table = _class_table(vocab)
    if not table:
        return []
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
        if (
            hit is None
            and fuzzy
            and tokens[i] not in STOP
            and tokens[i] not in _KNOWN_WORDS
            and len(tokens[i]) > 3
            and not _is_modifier(tokens[i])
        ):
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
        or w in COMPASS
        or w in CENTER
        or w in ORDINALS
        or w in NUMBERS
        or w in PLACE
    )


def _is_position(w: str) -> bool:
    return w in POS_X or w in POS_Y or w in COMPASS or w in CENTER


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
    bundled = _match_classes(toks, None, fuzzy=False) if vocabulary is not None else spans
    dec.english = (
        any(t in STOP or t in _KNOWN_WORDS or _is_modifier(t) or _is_verb_like(t) for t in toks)
        or bool(spans)
        or (len(toks) == 1 and re.fullmatch(r"[a-z]+", toks[0]) is not None)
    )
    rel_spans, positions = _relations(toks, spans, bundled, vocabulary)
    in_rel = {j for r in rel_spans for j in range(r[0], r[1])} | {j for p in positions for j in p[0]}
    targets = [s for s in spans if s[0] not in in_rel]
    if not targets:  # a class of another bundled vocabulary, kept as the phrase ("expressway service area")
        targets = [s for s in bundled if s[0] not in in_rel and (vocabulary is None or _free_ok(toks, s))]
    used = set(in_rel)
    for s in targets:
        used.update(range(s[0], s[1]))
    first_rel = min([r[0] for r in rel_spans], default=len(toks))
    plural = False
    if targets:
        dec.local = list(dict.fromkeys(s[2] for s in targets))
        plural = any(toks[s[1] - 1] != _singular(toks[s[1] - 1]) for s in targets)
        plural_at = targets[0][1] - 1
    else:
        noun = _free_noun(toks, used, first_rel)
        if noun:
            dec.local = [noun]
            plural = noun.split()[-1] not in toks
            words = noun.split()
            hit = [i for i, t in enumerate(toks[:first_rel]) if t in words or _singular(t) in words]
            used.update(hit)
            plural_at = max(hit, default=0)
    _modifiers(toks, used, dec)
    for idx, x, y in positions:
        if x or y:
            dec.global_.append(GlobalToken("position", " ".join(toks[j] for j in idx), {"x": x, "y": y}))
    for start, end, kind, anchor in sorted(rel_spans):
        dec.global_.append(GlobalToken("relation", " ".join(toks[start:end]), {"type": kind, **anchor}))
    counts = [g for g in dec.global_ if g.kind == "multiplicity"]
    if plural and not counts:
        dec.global_.append(GlobalToken("multiplicity", toks[plural_at], {"n": "some"}))
    dec.wants_multiple = plural or any(g.value["n"] in ("all", "some") or g.value["n"] > 1 for g in counts)
    return dec


def _free_ok(toks, span) -> bool:
    """A bundled-vocabulary phrase outside the user's vocabulary counts as the noun when it is a
    multi-word phrase (single words go through the free-noun rule)."""
    return span[1] - span[0] > 1


def _np_after(toks: list[str], start: int) -> int:
    """First index after the determiners, numbers and adjectives (colour/size) that open a noun phrase."""
    j = start
    while j < len(toks) and (
        toks[j] in STOP - IMAGE_WORDS - {"area", "side", "part"}
        or toks[j] in NUMBERS
        or toks[j] in COLOURS
        or toks[j] in SIZE
        or toks[j] in ("other", "another", "big", "wide", "narrow", "main", "small")
    ):
        if toks[j] in ("of", "and", "or", "which", "that", "who") and j > start:
            break
        j += 1
    return j


def _anchor_at(toks, start, spans, bundled, vocabulary) -> tuple[int, dict] | None:
    """The noun phrase a relation marker points at: ``(end, {"anchor", "anchor_kind", "anchor_text"})``
    with ``anchor_kind`` class | landcover | thing | image, or None when the words after the marker are
    no noun phrase ("on the left", "by").

    The anchor is a class of the vocabulary, else a land-cover phrase (:data:`LANDCOVER`), else a class of
    any bundled vocabulary (kept as its phrase), else the singular head of the free noun phrase."""
    q = _np_after(toks, start)
    while q + 1 < len(toks) and toks[q] in COMPASS_ADJ and not _is_position(toks[q + 1]):
        q += 1
    if q >= len(toks) or _is_position(toks[q]) or toks[q] in PLACE:
        return None
    words = lambda e: " ".join(toks[start:e])  # noqa: E731
    found = []  # (end, rank, anchor): the longest phrase wins, ties by rank
    for s in spans if vocabulary is not None else []:
        if s[0] == q:
            found.append((s[1], 0, {"anchor": s[2], "anchor_kind": "class"}))
    sing = [_singular(t) for t in toks]
    for n in (3, 2, 1):
        for cand in (tuple(toks[q : q + n]), tuple(toks[q : q + n - 1] + sing[q + n - 1 : q + n])):
            if len(cand) == n and cand in _LC_KEYS:
                found.append((q + n, 1, {"anchor": _LC_KEYS[cand], "anchor_kind": "landcover"}))
    for s in bundled:
        if s[0] == q:
            kind = "class" if vocabulary is None else "thing"
            found.append((s[1], 2, {"anchor": s[2], "anchor_kind": kind}))
    if found:
        end, _, anchor = max(found, key=lambda f: (f[0], -f[1]))
        return end, {**anchor, "anchor_text": words(end)}
    if toks[q] in IMAGE_WORDS:
        return q + 1, {"anchor": None, "anchor_kind": "image", "anchor_text": words(q + 1)}
    end = q
    while (
        end < len(toks)
        and toks[end] not in STOP
        and not _is_verb_like(toks[end])
        and not _is_position(toks[end])
        and _marker_at(toks, end) is None
    ):
        end += 1
    heads = [t for t in toks[q:end] if not _is_modifier(t) and t not in GENERIC]
    if not heads or not re.fullmatch(r"[a-z]+", heads[-1]):
        return None
    return end, {"anchor": _singular(heads[-1]), "anchor_kind": "thing", "anchor_text": words(end)}


def _marker_at(toks, i) -> tuple[int, str] | None:
    for words, kind in RELATIONS:
        if tuple(toks[i : i + len(words)]) == words:
            return len(words), kind
    return None


_AS_POSITION = {"left_of": ("left", None), "right_of": ("right", None), "above": (None, "top")}
_AS_POSITION["below"] = (None, "bottom")


def _relations(toks, spans, bundled, vocabulary):
    """Relation spans ``(start, end, type, anchor dict)`` and "… of the image" positions
    ``(indices, x, y)``."""
    rels, positions, i = [], [], 0
    while i < len(toks):
        m = _marker_at(toks, i)
        if m is None and toks[i] == "of" and i > 0 and (_is_position(toks[i - 1]) or toks[i - 1] in PLACE):
            m = (1, "near")  # "the top left of the road", "the left side of the road": position + near
        if m is None:
            i += 1
            continue
        n, kind = m
        if n == 2 and toks[i] in ("left", "right") and i > 0 and toks[i - 1] in POS_Y:
            i, n, kind = i + 1, 1, "near"  # "the top left of the road"
        found = _anchor_at(toks, i + n, spans, bundled, vocabulary)
        if found is None:
            i += 1
            continue
        end, anchor = found
        if anchor["anchor_kind"] == "image":  # "on the left of the image" → a position
            marker = toks[i : i + n]
            x = next((POS_X[w] for w in marker if w in POS_X), None)
            y = next((POS_Y[w] for w in marker if w in POS_Y), None)
            if x or y:
                positions.append((list(range(i, end)), x, y))
            elif kind in _AS_POSITION:
                x, y = _AS_POSITION[kind]
                positions.append((list(range(i, end)), x, y))
            else:  # "at the top of the image": the position words stay; "of the image" is dropped
                positions.append((list(range(i, end)), None, None))
            i = end
            continue
        if kind == "between" and end < len(toks) and toks[end] == "and":
            second = _anchor_at(toks, end + 1, spans, bundled, vocabulary)
            if second is not None:
                end, anchor = second[0], {**anchor, "anchor2": second[1]["anchor"]}
        rels.append((i, end, kind, anchor))
        i = end
    return rels, positions


def _modifiers(toks: list[str], used: set[int], dec: Decomposition) -> None:
    """Position, size, colour, ordinal, multiplicity and other tokens outside the class/relation spans."""
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
        if _is_position(t):
            j, x, y = i, None, None
            while j < len(toks) and j not in used and (_is_position(toks[j]) or toks[j] in PLACE):
                w = toks[j]
                x = POS_X.get(w, COMPASS.get(w, (x, y))[0])
                y = POS_Y.get(w, COMPASS.get(w, (x, y))[1])
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
            n = NUMBERS.get(t, int(t) if t.isdigit() else 1)
            dec.global_.append(GlobalToken("multiplicity", t, {"n": n}))
        elif (
            t not in STOP
            and t not in GENERIC
            and t not in PLACE
            and t not in ("color", "colored")
            and re.fullmatch(r"[a-z]+", t)
            and not _is_verb_like(t)
        ):
            dec.global_.append(GlobalToken("other", t, None))
        used.add(i)
        i += 1


def _is_verb_like(w: str) -> bool:
    return w in _VERBS


_VERBS = {
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
    "moored",
    "docked",
    "lies",
    "lying",
    "located",
    "placed",
    "situated",
    "built",
    "running",
    "crosses",
    "stands",
    "sitting",
    "waiting",
    "visible",
}
_KNOWN_WORDS = (
    {w for words, _ in RELATIONS for w in words}
    | set(LANDCOVER)
    | GENERIC
    | IMAGE_WORDS
    | {"color", "colored", "other", "another", "and", "or", "not", "only"}
)
