"""Bundled vocabularies, templates, knowledge, parse_classes and build_prompts."""

import pytest

from dglrsis.errors import DglrsisError
from dglrsis.vocab import (
    BUNDLED,
    MAX_CLASSES,
    Vocabulary,
    build_prompt_groups,
    build_prompts,
    knowledge_for,
    load_templates,
    load_vocabulary,
    parse_classes,
    synonyms_for,
)

COUNTS = {
    "isaid": 15,
    "rrsisd": 20,
    "dlrsd": 17,
    "potsdam": 6,
    "vaihingen": 6,
    "loveda": 7,
    "uavid": 8,
    "udd5": 5,
    "vdd": 7,
}


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_counts_and_knowledge(name):
    v = load_vocabulary(name)
    assert len(v.names) == COUNTS[name] == len(v.synonyms)
    assert len(set(v.names)) == len(v.names)
    for n, syn in zip(v.names, v.synonyms, strict=False):
        assert syn[0] == n and len(set(syn)) == len(syn)
        k = knowledge_for(n)
        assert 1 <= len(k) <= 3 and all(isinstance(s, str) and 10 < len(s) < 120 for s in k), n


def test_dataset_order():
    assert load_vocabulary("isaid").names[:3] == ["ship", "storage tank", "baseball diamond"]
    assert load_vocabulary("isaid").names[-1] == "harbor"
    rr = load_vocabulary("rrsisd").names
    assert rr[0] == "expressway service area" and rr[2] == "airplane" and rr[-1] == "windmill"
    assert load_vocabulary("loveda").names[0] == "background"


def test_knowledge_by_synonym_any_case():
    assert knowledge_for("Oil Tank") == knowledge_for("storage tank") != []
    assert knowledge_for("AIRCRAFT") == knowledge_for("airplane") != []
    assert knowledge_for("flux capacitor") == []
    assert synonyms_for("car")[0] == "car" and "small vehicle" in synonyms_for("car")


def test_vocabulary_file(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("# comment\nBoat, Ship\n\nGround_Track_Field\n")
    v = load_vocabulary(f)
    assert v.names == ["boat", "ground track field"] and v.synonyms[0] == ["boat", "ship"]
    f.write_text("ship\nShip\n")
    with pytest.raises(DglrsisError, match="twice"):
        load_vocabulary(f)
    f.write_text("# only comments\n")
    with pytest.raises(DglrsisError, match="no classes"):
        load_vocabulary(f)
    with pytest.raises(DglrsisError, match="no vocabulary"):
        load_vocabulary(tmp_path / "missing.txt")
    f.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DglrsisError, match="cannot read"):
        load_vocabulary(f)


def test_templates(tmp_path):
    assert len(load_templates("imagenet80")) == 80
    assert load_templates("simple") == ["a photo of a {}."]
    rs = load_templates("rs")
    assert 10 <= len(rs) <= 20 and all("{}" in t for t in rs)
    f = tmp_path / "t.txt"
    f.write_text("no placeholder\n")
    with pytest.raises(DglrsisError):
        load_templates(str(f))
    with pytest.raises(DglrsisError):
        load_templates("nonexistent-set")


def test_build_prompts_ablations():
    v = load_vocabulary("isaid")
    full = build_prompts(v)
    no_syn = build_prompts(v, synonyms=False)
    no_kb = build_prompts(v, knowledge=False)
    bare = build_prompts(v, synonyms=False, knowledge=False)
    n_t = len(load_templates("rs"))
    tank = v.names.index("storage tank")
    assert len(full) == len(v.names)
    assert full != no_syn and full != no_kb and no_syn != bare
    assert len(bare[tank]) == n_t
    assert len(no_kb[tank]) == n_t * len(v.synonyms[tank])
    assert len(full[tank]) == n_t * len(v.synonyms[tank]) + len(knowledge_for("storage tank"))
    assert any("oil tank" in p for p in full[tank]) and not any("oil tank" in p for p in no_syn[tank])
    desc = knowledge_for("storage tank")[0]
    assert f"a satellite image of a storage tank, {desc}" in full[tank]
    assert not any(desc in p for p in no_kb[tank])
    for prompts in full:
        assert len(set(prompts)) == len(prompts)
    assert build_prompts(v) == full  # deterministic
    groups = build_prompt_groups(v)
    assert len(groups[tank]) == len(v.synonyms[tank])
    assert sorted(p for g in groups[tank] for p in g) == sorted(full[tank])


def test_parse_classes():
    v = parse_classes("  Ship , storage_tank|Oil Tank,  flux capacitor ")
    assert v.names == ["ship", "storage tank", "flux capacitor"]
    assert v.synonyms[1] == ["storage tank", "oil tank"]
    assert "boat" in v.synonyms[0]  # bundled synonyms for a known name without '|'
    assert v.synonyms[2] == ["flux capacitor"]  # unknown: open vocabulary, no synonyms
    assert parse_classes("ship", bundled_synonyms=False).synonyms == [["ship"]]
    assert isinstance(v, Vocabulary)
    assert len(parse_classes(", ".join(f"class {i}" for i in range(500))).names) == 500


@pytest.mark.parametrize(
    "bad,match",
    [
        ("", "empty class list"),
        (" , ,", "empty class list"),
        ("ship, Ship", "'ship' is listed twice"),
        ("ship, storage  tank, storage_tank", "listed twice"),
        ("ship, |", "empty class name"),
    ],
)
def test_parse_classes_errors(bad, match):
    with pytest.raises(DglrsisError, match=match):
        parse_classes(bad)


def test_parse_classes_limit():
    with pytest.raises(DglrsisError, match=f"at most {MAX_CLASSES}"):
        parse_classes(",".join(f"c{i}" for i in range(MAX_CLASSES + 1)))
