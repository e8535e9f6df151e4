import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casemate.errors import UsageError
from casemate.security.labels import Label, Level, format_label, lub, parse_label

COMPS = st.frozensets(st.sampled_from(["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO"]), max_size=4)
LABELS = st.builds(Label, st.sampled_from(list(Level)), COMPS)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("NP", "NP"),
        ("np", "NP"),
        ("Non Protégé", "NP"),
        ("non protege", "NP"),
        ("Diffusion Restreinte", "DR"),
        ("DIFFUSION RESTREINTE", "DR"),
        ("restricted", "DR"),
        ("secret", "S"),
        ("Secret//bravo/ALPHA", "S//ALPHA/BRAVO"),
        ("Très Secret//ALPHA", "TS//ALPHA"),
        ("tres secret", "TS"),
        ("TRÈS SECRET", "TS"),
        ("Top Secret", "TS"),
        ("  TS // alpha / charlie ", "TS//ALPHA/CHARLIE"),
    ],
)
def test_parse_accepts_french_and_english_names(text: str, expected: str) -> None:
    assert format_label(parse_label(text)) == expected


@pytest.mark.parametrize(
    "text,names",
    [
        ("confidentiel", "'confidentiel'"),
        ("", "empty label"),
        ("S//", "no compartment"),
        ("S//alpha//beta", "empty compartment"),
        ("S//AL PHA!", "'AL PHA!'"),
        ("S//ALPHA/", "empty compartment"),
        ("Ultra//ALPHA", "'Ultra'"),
    ],
)
def test_parse_errors_name_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_label(text)
    assert names in err.value.message


@given(LABELS)
def test_parse_format_round_trip(label: Label) -> None:
    assert parse_label(format_label(label)) == label
    assert parse_label(label.display) == label


@given(LABELS)
def test_dominance_is_reflexive(a: Label) -> None:
    assert a.dominates(a)


@given(LABELS, LABELS)
def test_dominance_is_antisymmetric(a: Label, b: Label) -> None:
    if a.dominates(b) and b.dominates(a):
        assert a == b


@given(LABELS, LABELS, LABELS)
def test_dominance_is_transitive(a: Label, b: Label, c: Label) -> None:
    if a.dominates(b) and b.dominates(c):
        assert a.dominates(c)


@settings(max_examples=300)
@given(LABELS, LABELS, LABELS)
def test_lub_is_the_least_upper_bound(a: Label, b: Label, c: Label) -> None:
    j = a.lub(b)
    assert j.dominates(a) and j.dominates(b)
    if c.dominates(a) and c.dominates(b):
        assert c.dominates(j)
    assert j == b.lub(a)
    assert a.lub(a) == a
    assert a.lub(b).lub(c) == a.lub(b.lub(c))
    assert lub([a, b, c]) == j.lub(c)


@given(LABELS, LABELS)
def test_glb_is_the_greatest_lower_bound(a: Label, b: Label) -> None:
    m = a.glb(b)
    assert a.dominates(m) and b.dominates(m)
    # absorption laws of a lattice
    assert a.lub(a.glb(b)) == a
    assert a.glb(a.lub(b)) == a


def test_levels_are_ordered() -> None:
    assert parse_label("TS").dominates(parse_label("S"))
    assert parse_label("S").dominates(parse_label("DR"))
    assert parse_label("DR").dominates(parse_label("NP"))
    assert not parse_label("TS").dominates(parse_label("NP//ALPHA"))
    assert parse_label("S//ALPHA/BRAVO").dominates(parse_label("DR//ALPHA"))
