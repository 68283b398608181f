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
        [("multiplicity", {"n": 2}), ("relation", {"type": "near", "anchor": "bridge"})],
        True,
    ),
    ("all the vehicles", "rrsisd", ["vehicle"], [("multiplicity", {"n": "all"})], True),
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
        [("size", {"extreme": None, "degree": "long"}), ("relation", {"type": "across", "anchor": "river"})],
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
        [("colour", "blue"), ("relation", {"type": "near", "anchor": "trees"})],
        False,
    ),
    (
        "the vehicles parked beside the white building",
        "isaid",
        ["vehicle"],
        [("relation", {"type": "near", "anchor": "building"}), ("multiplicity", {"n": "some"})],
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
    ("the trucks", "isaid", ["large vehicle"], [("multiplicity", {"n": "some"})], True),
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
    ("three storage tanks", "isaid", ["storage tank"], [("multiplicity", {"n": 3})], True),
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


# Free text as people type it (issue 20): relations to any anchor (a class, a land cover or an
# out-of-vocabulary thing, ``anchor_kind``), "of the image" as a position, multi-word class nouns of every
# bundled vocabulary with or without a vocabulary, plural / "all" / numerals as a multiplicity token,
# compass words, British spellings.
FREE_CASES = [
    (
        "small vehicles on the road",
        "isaid",
        ["small vehicle"],
        [
            ("relation", {"anchor": "road", "anchor_kind": "landcover", "type": "on"}),
            ("multiplicity", {"n": "some"}),
        ],
        True,
    ),
    (
        "the long overpass across the river",
        "rrsisd",
        ["overpass"],
        [
            ("size", {"degree": "long", "extreme": None}),
            ("relation", {"anchor": "river", "anchor_kind": "landcover", "type": "across"}),
        ],
        False,
    ),
    (
        "the black helicopter on the helipad at the top",
        None,
        ["helicopter"],
        [
            ("colour", "black"),
            ("position", {"x": None, "y": "top"}),
            ("relation", {"anchor": "helipad", "anchor_kind": "thing", "type": "on"}),
        ],
        False,
    ),
    (
        "the expressway toll station on the left of the image",
        "rrsisd",
        ["expressway toll station"],
        [("position", {"x": "left", "y": None})],
        False,
    ),
    (
        "The expressway service area located at the bottom",
        "rrsisd",
        ["expressway service area"],
        [("position", {"x": None, "y": "bottom"})],
        False,
    ),
    ("all storage tanks", None, ["storage tank"], [("multiplicity", {"n": "all"})], True),
    (
        "the two ships near the bridge",
        "isaid",
        ["ship"],
        [
            ("multiplicity", {"n": 2}),
            ("relation", {"anchor": "bridge", "anchor_kind": "class", "type": "near"}),
        ],
        True,
    ),
    (
        "the ship in the northern part of the picture",
        None,
        ["ship"],
        [("position", {"x": None, "y": "top"})],
        False,
    ),
    (
        "the building in the south-east corner",
        None,
        ["building"],
        [("position", {"x": "right", "y": "bottom"})],
        False,
    ),
    (
        "the grey aeroplane next to the harbour",
        None,
        ["airplane"],
        [("colour", "grey"), ("relation", {"anchor": "harbor", "anchor_kind": "class", "type": "near"})],
        False,
    ),
    (
        "the ship moored along the shore",
        "rrsisd",
        ["ship"],
        [("relation", {"anchor": "shore", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the boat at the pier",
        None,
        ["boat"],
        [("relation", {"anchor": "pier", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the house in the residential area",
        "rrsisd",
        ["house"],
        [("relation", {"anchor": "residential area", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the car parked in the parking lot",
        None,
        ["car"],
        [("relation", {"anchor": "parking lot", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the red roof surrounded by trees",
        "isaid",
        ["roof"],
        [("colour", "red"), ("relation", {"anchor": "trees", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the vehicle on the left side of the road",
        None,
        ["vehicle"],
        [
            ("position", {"x": "left", "y": None}),
            ("relation", {"anchor": "road", "anchor_kind": "landcover", "type": "near"}),
        ],
        False,
    ),
    ("the plane at the top of the image", None, ["plane"], [("position", {"x": None, "y": "top"})], False),
    (
        "the tennis court between the pool and the road",
        None,
        ["tennis court"],
        [("relation", {"anchor": "pool", "anchor_kind": "class", "type": "between"})],
        False,
    ),
    (
        "the ship to the north of the bridge",
        None,
        ["ship"],
        [("relation", {"anchor": "bridge", "anchor_kind": "class", "type": "above"})],
        False,
    ),
    (
        "the white boats in the harbour",
        None,
        ["boat"],
        [
            ("colour", "white"),
            ("relation", {"anchor": "harbor", "anchor_kind": "class", "type": "on"}),
            ("multiplicity", {"n": "some"}),
        ],
        True,
    ),
    ("every windmill", "rrsisd", ["windmill"], [("multiplicity", {"n": "all"})], True),
    (
        "three airplanes on the runway",
        "rrsisd",
        ["airplane"],
        [
            ("multiplicity", {"n": 3}),
            ("relation", {"anchor": "airport", "anchor_kind": "class", "type": "on"}),
        ],
        True,
    ),
    (
        "the bridge over the canal",
        None,
        ["bridge"],
        [("relation", {"anchor": "river", "anchor_kind": "landcover", "type": "across"})],
        False,
    ),
    (
        "the storage tank on the right of the picture",
        None,
        ["storage tank"],
        [("position", {"x": "right", "y": None})],
        False,
    ),
    (
        "the ship in the centre of the scene",
        None,
        ["ship"],
        [("position", {"x": "center", "y": "center"})],
        False,
    ),
    ("the colour of the car is red", None, ["car"], [("colour", "red")], False),
    (
        "the grey ship docked at the jetty",
        None,
        ["ship"],
        [("colour", "grey"), ("relation", {"anchor": "pier", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the swimming pool beside the lawn",
        None,
        ["swimming pool"],
        [("relation", {"anchor": "grass", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the ship west of the island",
        None,
        ["ship"],
        [("relation", {"anchor": "island", "anchor_kind": "thing", "type": "left_of"})],
        False,
    ),
    ("the northernmost airplane", None, ["airplane"], [("position", {"x": None, "y": "top"})], False),
    (
        "the vehicle on the bridge",
        "rrsisd",
        ["vehicle"],
        [("relation", {"anchor": "bridge", "anchor_kind": "class", "type": "on"})],
        False,
    ),
    (
        "the trucks near the warehouse",
        None,
        ["truck"],
        [
            ("relation", {"anchor": "warehouse", "anchor_kind": "thing", "type": "near"}),
            ("multiplicity", {"n": "some"}),
        ],
        True,
    ),
    (
        "the car under the trees",
        None,
        ["car"],
        [("relation", {"anchor": "trees", "anchor_kind": "landcover", "type": "below"})],
        False,
    ),
    (
        "the small white car in the car park",
        "isaid",
        ["small vehicle"],
        [
            ("size", {"degree": "small", "extreme": None}),
            ("colour", "white"),
            ("relation", {"anchor": "parking lot", "anchor_kind": "landcover", "type": "on"}),
        ],
        False,
    ),
    (
        "the basketball court next to the football field",
        None,
        ["basketball court"],
        [("relation", {"anchor": "football field", "anchor_kind": "class", "type": "near"})],
        False,
    ),
    (
        "the ship at the bottom of the photo",
        None,
        ["ship"],
        [("position", {"x": None, "y": "bottom"})],
        False,
    ),
    ("the second ship from the left", None, ["ship"], [("ordinal", {"direction": "left", "n": 2})], False),
    ("the tank on the eastern side", None, ["tank"], [("position", {"x": "right", "y": None})], False),
    ("the plane in the north-west", None, ["plane"], [("position", {"x": "left", "y": "top"})], False),
    (
        "the largest storage tank near the sea",
        None,
        ["storage tank"],
        [
            ("size", {"degree": None, "extreme": "largest"}),
            ("relation", {"anchor": "sea", "anchor_kind": "landcover", "type": "near"}),
        ],
        False,
    ),
    (
        "the trees along the river",
        None,
        ["tree"],
        [
            ("relation", {"anchor": "river", "anchor_kind": "landcover", "type": "near"}),
            ("multiplicity", {"n": "some"}),
        ],
        True,
    ),
    (
        "the train station next to the railway",
        None,
        ["train station"],
        [("relation", {"anchor": "railway", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the dam across the valley",
        None,
        ["dam"],
        [("relation", {"anchor": "valley", "anchor_kind": "thing", "type": "across"})],
        False,
    ),
    (
        "the golf course near the lake",
        None,
        ["golf course"],
        [("relation", {"anchor": "water", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the chimney in the industrial area",
        None,
        ["chimney"],
        [("relation", {"anchor": "industrial area", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the plane parked on the apron",
        None,
        ["plane"],
        [("relation", {"anchor": "apron", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the stadium surrounded by buildings",
        None,
        ["stadium"],
        [("relation", {"anchor": "building", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the airplanes at the airport",
        "isaid",
        ["plane"],
        [
            ("relation", {"anchor": "airport", "anchor_kind": "thing", "type": "on"}),
            ("multiplicity", {"n": "some"}),
        ],
        True,
    ),
    ("both tennis courts", None, ["tennis court"], [("multiplicity", {"n": 2})], True),
    (
        "several ships near the coast",
        None,
        ["ship"],
        [
            ("multiplicity", {"n": "some"}),
            ("relation", {"anchor": "shore", "anchor_kind": "landcover", "type": "near"}),
        ],
        True,
    ),
    (
        "the boat in the water",
        "isaid",
        ["ship"],
        [("relation", {"anchor": "water", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the green field beside the road",
        None,
        ["field"],
        [("colour", "green"), ("relation", {"anchor": "road", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the roundabout in the middle of the image",
        None,
        ["roundabout"],
        [("position", {"x": "center", "y": "center"})],
        False,
    ),
    (
        "the ground track field on the right hand side",
        None,
        ["ground track field"],
        [("position", {"x": "right", "y": None})],
        False,
    ),
    (
        "the overpass above the highway",
        "rrsisd",
        ["overpass"],
        [("relation", {"anchor": "road", "anchor_kind": "landcover", "type": "above"})],
        False,
    ),
    (
        "the vehicles on the expressway",
        "rrsisd",
        ["vehicle"],
        [
            ("relation", {"anchor": "road", "anchor_kind": "landcover", "type": "on"}),
            ("multiplicity", {"n": "some"}),
        ],
        True,
    ),
    (
        "the harbour on the southern coast",
        None,
        ["harbor"],
        [("relation", {"anchor": "shore", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the bus in front of the station",
        None,
        ["bus"],
        [("relation", {"anchor": "station", "anchor_kind": "thing", "type": "near"})],
        False,
    ),
    (
        "the baseball diamond next to the school",
        None,
        ["baseball diamond"],
        [("relation", {"anchor": "school", "anchor_kind": "thing", "type": "near"})],
        False,
    ),
    (
        "the car behind the building",
        None,
        ["car"],
        [("relation", {"anchor": "building", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the ship inside the dock",
        None,
        ["ship"],
        [("relation", {"anchor": "pier", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the tenis court by the river",
        None,
        ["tennis court"],
        [("relation", {"anchor": "river", "anchor_kind": "landcover", "type": "near"})],
        False,
    ),
    (
        "the 2 cars near the roundabout",
        None,
        ["car"],
        [
            ("multiplicity", {"n": 2}),
            ("relation", {"anchor": "roundabout", "anchor_kind": "class", "type": "near"}),
        ],
        True,
    ),
    ("the ship on top of the picture", None, ["ship"], [("position", {"x": None, "y": "top"})], False),
    (
        "the helicopter in the lower right corner of the image",
        None,
        ["helicopter"],
        [("position", {"x": "right", "y": "bottom"})],
        False,
    ),
    (
        "the plane to the left of the hangar",
        None,
        ["plane"],
        [("relation", {"anchor": "hangar", "anchor_kind": "thing", "type": "left_of"})],
        False,
    ),
    (
        "the harbour on the southern coast",
        None,
        ["harbor"],
        [("relation", {"anchor": "shore", "anchor_kind": "landcover", "type": "on"})],
        False,
    ),
    (
        "the ground track field on the right hand side",
        None,
        ["ground track field"],
        [("position", {"x": "right", "y": None})],
        False,
    ),
    ("the ship in the north of the image", None, ["ship"], [("position", {"x": None, "y": "top"})], False),
    (
        "the vehicle in the upper left corner of the scene",
        None,
        ["vehicle"],
        [("position", {"x": "left", "y": "top"})],
        False,
    ),
]


def _check(expr, vocab, local, kinds, multiple):
    d = decompose(expr, vocab)
    assert d.local == local
    got = [(g.kind, g.value) for g in d.global_]
    assert [k for k, _ in got] == [k for k, _ in kinds]
    for (_, value), (_, want) in zip(got, kinds, strict=False):
        if isinstance(want, dict):  # the listed keys only (relations also carry anchor_kind/anchor_text)
            assert {k: value.get(k) for k in want} == want
        elif want is not ...:
            assert value == want
    assert d.wants_multiple is multiple
    js = d.to_json()
    assert json.loads(json.dumps(js)) == js and set(js) == {"text", "local", "global", "multiple"}


@pytest.mark.parametrize("expr,vocab,local,kinds,multiple", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_builtin_tagger(monkeypatch, expr, vocab, local, kinds, multiple):
    monkeypatch.setattr(T, "_nltk_tagger", lambda: None)
    _check(expr, vocab, local, kinds, multiple)


@pytest.mark.parametrize("expr,vocab,local,kinds,multiple", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_nltk_tagger(expr, vocab, local, kinds, multiple):
    if T._nltk_tagger() is None:
        pytest.skip("NLTK tagger data not installed")
    _check(expr, vocab, local, kinds, multiple)


@pytest.mark.parametrize(
    "expr,vocab,local,kinds,multiple", FREE_CASES, ids=[f"free{i}" for i in range(len(FREE_CASES))]
)
def test_free_text(monkeypatch, expr, vocab, local, kinds, multiple):
    monkeypatch.setattr(T, "_nltk_tagger", lambda: None)
    _check(expr, vocab, local, kinds, multiple)


def test_free_table_is_varied():
    assert len(FREE_CASES) >= 60
    anchor_kinds = {v["anchor_kind"] for c in FREE_CASES for k, v in c[3] if k == "relation"}
    assert anchor_kinds == {"class", "landcover", "thing"}
    assert {v["type"] for c in FREE_CASES for k, v in c[3] if k == "relation"} >= {
        "near",
        "on",
        "across",
        "above",
        "below",
        "left_of",
        "between",
    }
    assert sum(c[4] for c in FREE_CASES) >= 10 and sum(c[1] is None for c in FREE_CASES) >= 30


def test_anchor_text_is_kept():
    d = decompose("the black helicopter on the helipad at the top")
    rel = [g for g in d.global_ if g.kind == "relation"][0]
    assert rel.text == "on the helipad"
    assert rel.value == {
        "type": "on",
        "anchor": "helipad",
        "anchor_kind": "thing",
        "anchor_text": "the helipad",
    }


def test_british_spellings_equal_american():
    for gb, us in [
        ("the grey ship in the harbour", "the grey ship in the harbor"),
        ("the aeroplane in the centre", "the airplane in the center"),
        ("the car of red colour", "the car of red color"),
    ]:
        a, b = decompose(gb, "rrsisd").to_json(), decompose(us, "rrsisd").to_json()
        a.pop("text"), b.pop("text")
        assert a == b


@pytest.mark.parametrize(
    "expr,referable",
    [
        ("the of a the", False),
        ("🚢 🛳", False),
        ("港口旁边的白色船只", False),
        ("le navire blanc à gauche", False),
        ("das weiße Schiff links", False),
        ("the purple giraffe", True),
        ("the thing on the left", True),
        ("helipad", True),
        ("the white ship", True),
    ],
)
def test_referable(expr, referable):
    assert decompose(expr, "rrsisd").referable is referable


def test_table_is_varied():
    assert len(CASES) >= 40
    kinds = {k for case in CASES for k, _ in case[3]}
    assert kinds == {"position", "size", "colour", "relation", "ordinal", "multiplicity", "other"}
    free_kinds = {k for case in FREE_CASES for k, _ in case[3]}
    assert free_kinds >= {"position", "size", "colour", "relation", "ordinal", "multiplicity"}


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
    assert out["global"][0]["value"] == {
        "type": "near",
        "anchor": "harbor",
        "anchor_kind": "class",
        "anchor_text": "the harbor",
    }
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
    assert [g.kind for g in d.global_] == ["other", "position", "multiplicity"]

    def broken(toks):
        raise LookupError("tagger data for another version")

    monkeypatch.setattr(T, "_nltk_tagger", lambda: broken)
    assert decompose("the old red house on the left").local == ["house"]
