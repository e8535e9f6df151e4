"""Randomised users, labels and read paths: nothing ever returns or reveals an unreadable version."""

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casemate.errors import NotFound
from casemate.security.labels import Label, Level, format_label
from casemate.security.policy import User, can_read
from casemate.workspace import Workspace

COMPS = ["ALPHA", "BRAVO", "CHARLIE"]
LABELS = st.builds(Label, st.sampled_from(list(Level)), st.frozensets(st.sampled_from(COMPS), max_size=3))
USERS = st.builds(
    User,
    name=st.just("probe"),
    clearance=LABELS,
    roles=st.just(frozenset({"analyst"})),
    disabled=st.integers(0, 19).map(lambda n: n == 0),
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    home = tmp_path_factory.mktemp("leak") / "ws"
    ws = Workspace.init(home)
    god = User("admin", Label(Level.TS, frozenset(COMPS)), frozenset({"admin", "officer"}))
    rng = random.Random(7)
    versions = []
    for i in range(150):
        label = Label(Level(rng.randrange(4)), frozenset(c for c in COMPS if rng.random() < 0.3))
        parents = []
        if versions and rng.random() < 0.5:
            parents = [p.id for p in rng.sample(versions, k=min(len(versions), rng.randint(1, 2)))]
        kind = rng.choice(["document", "other", "detections"])
        v = ws.catalog.put(
            god,
            f"content-{i}".encode(),
            name=f"secret-name-{i}",
            kind=kind,
            label=None if parents and rng.random() < 0.5 else label.lub(
                ws.catalog.check_label(god, None, parents)[0]
            ),
            parents=parents,
            text=f"text-{i}",
        )
        versions.append(v)
    for v in rng.sample(versions, 15):
        if v.label.level > Level.NP:
            versions.append(ws.catalog.declassify(god, v.id, Label(Level.NP), "test"))
    yield ws, versions
    ws.close()


def _ids_in(tree):
    yield tree["id"]
    for p in tree["parents"]:
        yield from _ids_in(p)


# 10,000 in the full run (CASEMATE_LEAK_CASES=10000); CI: 4,000 (budget)
@settings(max_examples=int(os.environ.get("CASEMATE_LEAK_CASES", "4000")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(user=USERS, pick=st.integers(min_value=0, max_value=10_000), path=st.sampled_from(
    ["get", "read_bytes", "text", "blob_path", "lineage", "list", "asset", "put_child", "versions_of_asset"]
))
def test_no_read_path_leaks(corpus, user, pick, path) -> None:
    ws, versions = corpus
    cat = ws.catalog
    v = versions[pick % len(versions)]
    allowed = can_read(user, v.label)
    by_id = {x.id: x for x in versions}
    if path == "list":
        for kind in (None, "document"):
            page = cat.list(user, kind=kind, limit=20, audit=False)
            assert all(can_read(user, x.label) for x in page)
            assert all(can_read(user, by_id[p].label) for x in page for p in x.parents)
            if page:
                more = cat.list(user, kind=kind, limit=20, before=page[-1].id, audit=False)
                assert all(can_read(user, x.label) for x in more)
        return
    if path == "versions_of_asset":
        assert all(can_read(user, x.label) for x in cat.versions_of_asset(user, v.asset_id))
        return
    if path == "asset":
        try:
            got = cat.get(user, v.asset_id, audit=False)
        except NotFound as e:
            assert e.message == f"no such item: {v.asset_id}"
            assert not any(can_read(user, x.label) for x in versions if x.asset_id == v.asset_id)
        else:
            assert can_read(user, got.label)
        return
    if path == "put_child":
        try:
            child = cat.check_label(user, None, [v.id])
        except NotFound as e:
            assert not allowed and e.message == f"no such item: {v.id}"
        else:
            assert allowed and child[0].dominates(v.label)
        return
    fn = {"get": cat.get, "read_bytes": cat.read_bytes, "text": cat.text, "blob_path": cat.blob_path,
          "lineage": cat.lineage}[path]
    try:
        out = fn(user, v.id)
    except NotFound as e:
        assert not allowed
        assert e.message == f"no such item: {v.id}"  # word for word what a missing id gets
        return
    assert allowed
    if path == "get":
        assert all(can_read(user, by_id[p].label) for p in out.parents)
    if path == "lineage":
        ids = list(_ids_in(out))
        assert all(can_read(user, by_id[i].label) for i in ids)
        # every node shown is a readable version, shown with its own name and label only
        for node in _nodes(out):
            mine = by_id[node["id"]]
            assert node["name"] == mine.name and node["label"] == format_label(mine.label)
            assert set(node) == {"id", "name", "kind", "label", "parents"}


def _nodes(tree):
    yield tree
    for p in tree["parents"]:
        yield from _nodes(p)


def test_iter_versions_is_filtered(corpus) -> None:
    ws, versions = corpus
    for clearance in ["NP", "DR//ALPHA", "S//BRAVO/CHARLIE", "TS"]:
        from casemate.security.labels import parse_label

        user = User("probe", parse_label(clearance), frozenset())
        got = list(ws.catalog.iter_versions(user))
        expected = [v.id for v in versions if can_read(user, v.label)]
        assert sorted(v.id for v in got) == sorted(expected)


def test_disabled_user_reads_nothing(corpus) -> None:
    ws, versions = corpus
    user = User("probe", Label(Level.TS, frozenset(COMPS)), frozenset(), disabled=True)
    assert ws.catalog.list(user) == []
    with pytest.raises(NotFound):
        ws.catalog.get(user, versions[0].id)
