"""GLD text decomposition: a table of RRSIS-D-style and free expressions, run with the built-in tagger
and (when its data is installed) with NLTK's tagger; bad inputs; the CLI."""

import json

import pytest

import dglrsis.text as T
from dglrsis.errors import DglrsisError
from dglrsis.text import decompose

L, R, TOP, BOT, C = "left", "right", "top", "bottom", "center"

# (expression, vocabulary, expected local, expected [(kind, value or ...)], wants_multiple)
# A value of ... only checks the kind.
CASES = [
    (
        "The baseball field on the top",
        "rrsisd",
        ["baseball field"],
        [("position", {"x": None, "y": TOP})],
        False,
    ),
    (
        "a gray vehicle is on the top left of the road",
        "rrsisd",
        ["vehicle"],
        [
            ("colour", "grey"),
            ("position", {"x": L, "y": TOP}),
            ("relation", {"type": "near", "anchor": "road"}),
        ],
        False,
    ),
    ("the storage tank in the middle", "rrsisd", ["storage tank"], [("position", {"x": C, "y": C})], False),
    ("The overpass at the bottom", "rrsisd", ["overpass"], [("position", {"x": None, "y": BOT})], False),
    ("THE SHIP ON THE LEFT", "isaid", ["ship"], [("position", {"x": L, "y": None})], False),
    (
        "the car next to the harbor",
        "isaid",
        ["small vehicle"],
        [("relation", {"type": "near", "anchor": "harbor"})],
        False,
    ),
    (
        "the vehicle next to the harbor",
        "rrsisd",
        ["vehicle"],
        [("relation", {"type": "near", "anchor": "harbor"})],
        False,
    ),
    ("the aircraft on the right", "rrsisd", ["airplane"], [("position", {"x": R, "y": None})], False),
    (
        "the tenis court in the upper-left corner",
        "isaid",
        ["tennis court"],
        [("position", {"x": L, "y": TOP})],
        False,
    ),
    (
        "the storge tank at the bottom right",
        "isaid",
        ["storage tank"],
        [("position", {"x": R, "y": BOT})],
        False,
    ),
    (
        "the ground track field in the center",
        "isaid",
        ["ground track field"],
        [("position", {"x": C, "y": C})],
        False,
    ),
    (
        "expressway toll station on the left",
        "rrsisd",
        ["expressway toll station"],
        [("position", {"x": L, "y": None})],
        False,
    ),
    ("the thing on the left", None, [], [("position", {"x": L, "y": None})], False),
    ("the thing on the left", "isaid", [], [("position", {"x": L, "y": None})], False),
    ("the second ship from the left", "isaid", ["ship"], [("ordinal", {"n": 2, "direction": L})], False),
    (
        "two ships near the bridge",
        "isaid",
        ["ship"],
        [("count", {"n": 2}), ("relation", {"type": "near", "anchor": "bridge"})],
        True,
    ),
    ("all the vehicles", "rrsisd", ["vehicle"], [("count", {"n": "all"})], True),
    ("the third airplane", "rrsisd", ["airplane"], [("ordinal", {"n": 3, "direction": None})], False),
    (
        "the largest storage tank",
        "isaid",
        ["storage tank"],
        [("size", {"extreme": "largest", "degree": None})],
        False,
    ),
    (
        "the smallest white boat",
        "isaid",
        ["ship"],
        [("size", {"extreme": "smallest", "degree": None}), ("colour", "white")],
        False,
    ),
    (
        "a long bridge over the river",
        "rrsisd",
        ["bridge"],
        [("size", {"extreme": None, "degree": "long"}), ("relation", {"type": "above", "anchor": "river"})],
        False,
    ),
    (
        "the red tennis court between the two basketball courts",
        "isaid",
        ["tennis court"],
        [("colour", "red"), ("relation", {"type": "between", "anchor": "basketball court"})],
        False,
    ),
    (
        "the chimney to the right of the dam",
        "rrsisd",
        ["chimney"],
        [("relation", {"type": "right_of", "anchor": "dam"})],
        False,
    ),
    (
        "the windmill left of the golf course",
        "rrsisd",
        ["windmill"],
        [("relation", {"type": "left_of", "anchor": "golf field"})],
        False,
    ),
    (
        "the vehicle on the left of the bridge",
        "rrsisd",
        ["vehicle"],
        [("relation", {"type": "left_of", "anchor": "bridge"})],
        False,
    ),
    (
        "the car under the bridge",
        "isaid",
        ["small vehicle"],
        [("relation", {"type": "below", "anchor": "bridge"})],
        False,
    ),
    (
        "the blue swimming pool surrounded by trees",
        "isaid",
        ["swimming pool"],
        [("colour", "blue"), ("relation", {"type": "near", "anchor": "tree"})],
        False,
    ),
    (
        "the vehicles parked beside the white building",
        "isaid",
        ["vehicle"],
        [("relation", {"type": "near", "anchor": "building"})],
        True,
    ),
    ("the ship's bow", "isaid", ["ship"], [("other", None)], False),
    (
        "the dark grey ship in the top right corner",
        "isaid",
        ["ship"],
        [("colour", "dark"), ("colour", "grey"), ("position", {"x": R, "y": TOP})],
        False,
    ),
    ("the stadium", "rrsisd", ["stadium"], [], False),
    (
        "The train station in the lower part of the image",
        "rrsisd",
        ["train station"],
        [("position", {"x": None, "y": BOT})],
        False,
    ),
    (
        "a big white plane",
        "isaid",
        ["plane"],
        [("size", {"extreme": None, "degree": "large"}), ("colour", "white")],
        False,
    ),
    ("the trucks", "isaid", ["large vehicle"], [], True),
    (
        "the  small   vehicle ,at the  bottom!!",
        "isaid",
        ["small vehicle"],
        [("position", {"x": None, "y": BOT})],
        False,
    ),
    (
        "the tiny green roof",
        "loveda",
        ["building"],
        [("size", {"extreme": None, "degree": "small"}), ("colour", "green")],
        False,
    ),
    (
        "the building beside the road",
        "loveda",
        ["building"],
        [("relation", {"type": "near", "anchor": "road"})],
        False,
    ),
    (
        "the old red house on the left",
        None,
        ["house"],
        [("other", None), ("colour", "red"), ("position", {"x": L, "y": None})],
        False,
    ),
    (
        "the helicopter above the harbor",
        "isaid",
        ["helicopter"],
        [("relation", {"type": "above", "anchor": "harbor"})],
        False,
    ),
    (
        "the first vehicle from the top",
        "rrsisd",
        ["vehicle"],
        [("ordinal", {"n": 1, "direction": TOP})],
        False,
    ),
    ("the last ship on the right", "isaid", ["ship"], [("ordinal", {"n": -1, "direction": R})], False),
    ("three storage tanks", "isaid", ["storage tank"], [("count", {"n": 3})], True),
    (
        "the soccer field close to the ground track field",
        "isaid",
        ["soccer ball field"],
        [("relation", {"type": "near", "anchor": "ground track field"})],
        False,
    ),
    ("the leftmost dam", "rrsisd", ["dam"], [("position", {"x": L, "y": None})], False),
    (
        "the basketball court adjacent to the tennis court",
        "rrsisd",
        ["basketball court"],
        [("relation", {"type": "near", "anchor": "tennis court"})],
        False,
    ),
    (
        "the bridge below the overpass",
        "rrsisd",
        ["bridge"],
        [("relation", {"type": "below", "anchor": "overpass"})],
        False,
    ),
    ("The Storage-Tank", "isaid", ["storage tank"], [], False),
    ("white ship", None, ["ship"], [("colour", "white")], False),
    ("the gray car", "isaid", ["small vehicle"], [("colour", "grey")], False),
]


def _check(expr, vocab, local, kinds, multiple):
    d = decompose(expr, vocab)
    assert d.local == local
    got = [(g.kind, g.value) for g in d.global_]
    assert [k for k, _ in got] == [k for k, _ in kinds]
    for (_, value), (_, want) in zip(got, kinds, strict=False):
        if want is not ...:
            assert value == want
    assert d.wants_multiple is multiple
    js = d.to_json()
    assert json.loads(json.dumps(js)) == js and set(js) == {"text", "local", "global"}


@pytest.mark.parametrize("expr,vocab,local,kinds,multiple", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_builtin_tagger(monkeypatch, expr, vocab, local, kinds, multiple):
    monkeypatch.setattr(T, "_nltk_tagger", lambda: None)
    _check(expr, vocab, local, kinds, multiple)


@pytest.mark.parametrize("expr,vocab,local,kinds,multiple", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_nltk_tagger(expr, vocab, local, kinds, multiple):
    if T._nltk_tagger() is None:
        pytest.skip("NLTK tagger data not installed")
    _check(expr, vocab, local, kinds, multiple)


def test_table_is_varied():
    assert len(CASES) >= 40
    kinds = {k for case in CASES for k, _ in case[3]}
    assert kinds == {"position", "size", "colour", "relation", "ordinal", "count", "other"}


@pytest.mark.parametrize("bad", ["", "   \n\t ", None])
def test_empty_expression(bad):
    with pytest.raises(DglrsisError, match="empty expression"):
        decompose(bad)


def test_too_long():
    decompose("ship " * 199)  # 995 characters: fine
    with pytest.raises(DglrsisError, match="at most 1000"):
        decompose("ship " * 201)


def test_stop_words_only_and_non_latin(monkeypatch):
    monkeypatch.setattr(T, "_nltk_tagger", lambda: None)
    d = decompose("the of a the", "isaid")
    assert d.local == [] and d.global_ == []
    d = decompose("港口旁边的白色船只", "isaid")  # no crash; free tokens only
    assert isinstance(d.local, list) and d.to_json()["text"] == "港口旁边的白色船只"


def test_vocabulary_by_name_equals_object():
    from dglrsis.vocab import load_vocabulary

    expr = "the aircraft on the right"
    assert decompose(expr, "rrsisd").to_json() == decompose(expr, load_vocabulary("rrsisd")).to_json()


def test_cli(capsys, tmp_path):
    from dglrsis.cli import main

    assert main(["decompose", "the car next to the harbor", "--vocabulary", "isaid"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["local"] == ["small vehicle"]
    assert out["global"][0]["value"] == {"type": "near", "anchor": "harbor"}
    f = tmp_path / "classes.txt"
    f.write_text("boat, ship\nport, harbor\n")
    assert main(["decompose", "the ship near the harbor", "--classes-file", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["local"] == ["boat"] and out["global"][0]["value"]["anchor"] == "port"
    assert main(["decompose", "  "]) == 2
    assert "empty expression" in capsys.readouterr().err


def test_tagger_path_with_fake_tagger(monkeypatch):
    """The NLTK branch: the first noun the tagger finds is the head; a tagger missing data falls back."""
    tags = {"old": "JJ", "house": "NNS", "houses": "NNS", "shed": "VBD"}
    monkeypatch.setattr(T, "_nltk_tagger", lambda: lambda toks: [(t, tags.get(t, "DT")) for t in toks])
    d = decompose("the old houses on the left")
    assert d.local == ["house"] and d.wants_multiple
    assert [g.kind for g in d.global_] == ["other", "position"]

    def broken(toks):
        raise LookupError("tagger data for another version")

    monkeypatch.setattr(T, "_nltk_tagger", lambda: broken)
    assert decompose("the old red house on the left").local == ["house"]
