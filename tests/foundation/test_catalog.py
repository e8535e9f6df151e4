import pytest

from casemate.errors import NotFound, PermissionDenied, UsageError
from casemate.security.labels import parse_label

from .helpers import make_workspace


@pytest.fixture
def ws(home):
    ws = make_workspace(home)
    yield ws
    ws.close()


def test_put_get_and_read_back(ws) -> None:
    sam = ws.acting_user("sam")
    v = ws.catalog.put(sam, b"payload", name="a.bin", kind="other", label="S//ALPHA", metadata={"k": 1})
    got = ws.catalog.get(sam, v.id)
    assert got.sha256 == v.sha256 and got.label == parse_label("S//ALPHA") and got.metadata == {"k": 1}
    assert ws.catalog.read_bytes(sam, v.id) == b"payload"
    assert ws.catalog.blob_path(sam, v.id).read_bytes() == b"payload"
    # an asset id resolves to its newest readable version
    assert ws.catalog.get(sam, v.asset_id).id == v.id


def test_unreadable_is_exactly_like_missing(ws) -> None:
    sam, dana = ws.acting_user("sam"), ws.acting_user("dana")
    v = ws.catalog.put(sam, b"secret", name="s.txt", kind="document", label="S", text="secret")
    for call in (ws.catalog.get, ws.catalog.read_bytes, ws.catalog.text, ws.catalog.lineage, ws.catalog.blob_path):
        with pytest.raises(NotFound) as hidden:
            call(dana, v.id)
        with pytest.raises(NotFound) as missing:
            call(dana, "zzzzzzzzzzzz")
        assert hidden.value.message.replace(v.id, "X") == missing.value.message.replace("zzzzzzzzzzzz", "X")
        assert type(hidden.value) is type(missing.value)
    assert ws.catalog.list(dana) == []
    with pytest.raises(NotFound):
        ws.catalog.get(dana, v.asset_id)


def test_derived_label_must_dominate_inputs(ws) -> None:
    tess = ws.acting_user("tess")
    a = ws.catalog.put(tess, b"a", name="a", kind="other", label="S//ALPHA")
    b = ws.catalog.put(tess, b"b", name="b", kind="other", label="DR//BRAVO")
    d = ws.catalog.put(tess, b"d", name="d", kind="detections", parents=[a.id, b.id])
    assert d.label == parse_label("S//ALPHA/BRAVO")  # computed lub
    assert ws.catalog.list(tess, limit=1)[0].parents == (a.id, b.id)
    assert ws.catalog.list(ws.acting_user("sam"), kind="detections") == []
    with pytest.raises(UsageError, match="below S//ALPHA/BRAVO"):
        ws.catalog.put(tess, b"x", name="x", kind="detections", label="S//ALPHA", parents=[a.id, b.id])
    higher = ws.catalog.put(tess, b"y", name="y", kind="detections", label="TS//ALPHA/BRAVO", parents=[a.id, b.id])
    assert higher.label == parse_label("TS//ALPHA/BRAVO")


def test_parent_the_user_cannot_read_is_not_found(ws) -> None:
    tess, dana = ws.acting_user("tess"), ws.acting_user("dana")
    a = ws.catalog.put(tess, b"a", name="a", kind="other", label="TS")
    with pytest.raises(NotFound):
        ws.catalog.put(dana, b"x", name="x", kind="other", parents=[a.id])


def test_lineage_hides_unreadable_ancestors(ws) -> None:
    tess, sam = ws.acting_user("tess"), ws.acting_user("sam")
    root = ws.catalog.put(tess, b"r", name="root-public", kind="other", label="NP")
    mid = ws.catalog.put(tess, b"m", name="CODENAME-mid", kind="other", label="TS//BRAVO", parents=[root.id])
    leaf = ws.catalog.put(tess, b"l", name="leaf", kind="other", label="TS//BRAVO", parents=[mid.id])
    full = ws.catalog.lineage(tess, leaf.id)
    assert full["parents"][0]["id"] == mid.id and full["parents"][0]["parents"][0]["id"] == root.id
    # declassified copy readable by sam: its hidden source and everything past it stay invisible
    dec = ws.catalog.declassify(tess, leaf.id, "S", reason="released for ops")
    tree = ws.catalog.lineage(sam, dec.id)
    text = repr(tree)
    assert tree["id"] == dec.id and tree["parents"] == []
    assert "CODENAME" not in text and mid.id not in text and leaf.id not in text and "BRAVO" not in text
    assert ws.catalog.get(sam, dec.id).parents == ()


def test_declassify_rules(ws) -> None:
    sam, dana = ws.acting_user("sam"), ws.acting_user("dana")
    admin = ws.acting_user("admin")
    v = ws.catalog.put(sam, b"doc", name="doc", kind="document", label="S//ALPHA", text="doc text")
    with pytest.raises(PermissionDenied):
        ws.catalog.declassify(admin, ws.catalog.put(admin, b"q", name="q", kind="other", label="S").id, "DR", "r")
    with pytest.raises(NotFound):
        ws.catalog.declassify(dana, v.id, "NP", "r")  # cannot even see it
    with pytest.raises(UsageError, match="only lowers"):
        ws.catalog.declassify(sam, v.id, "S//ALPHA", "r")
    with pytest.raises(UsageError, match="reason"):
        ws.catalog.declassify(sam, v.id, "DR", "  ")
    d = ws.catalog.declassify(sam, v.id, "DR", "cleared by review 42")
    assert d.asset_id == v.asset_id and d.label == parse_label("DR")
    assert ws.catalog.text(dana, d.id) == "doc text"
    assert ws.catalog.get(dana, v.asset_id).id == d.id  # newest readable version of the asset
    assert any(e.action == "declassify" and e.target == d.id for e in ws.audit.tail(50))


def test_list_pages_are_filtered_and_ordered(ws) -> None:
    tess, dana = ws.acting_user("tess"), ws.acting_user("dana")
    labels = ["NP", "DR", "S", "TS//BRAVO", "DR//ALPHA"]
    ids = [ws.catalog.put(tess, f"x{i}".encode(), name=f"f{i}", kind="other", label=labels[i % 5]).id for i in range(60)]
    visible = [i for i, vid in enumerate(ids) if labels[i % 5] in ("NP", "DR")]
    page1 = ws.catalog.list(dana, limit=10)
    page2 = ws.catalog.list(dana, limit=10, before=page1[-1].id)
    got = [v.id for v in page1 + page2]
    assert got == [ids[i] for i in reversed(visible)][:20]
    assert all(v.label in (parse_label("NP"), parse_label("DR")) for v in page1 + page2)
    assert ws.catalog.list(dana, kind="document") == []
    with pytest.raises(UsageError):
        ws.catalog.list(dana, kind="nonsense")


def test_user_management_is_admin_only(ws) -> None:
    dana = ws.acting_user("dana")
    with pytest.raises(PermissionDenied):
        ws.users.add(dana, "eve", "TS")
    with pytest.raises(UsageError, match="unknown role"):
        ws.users.add(ws.acting_user("admin"), "eve", "TS", ["god"])
    with pytest.raises(UsageError, match="unknown classification level"):
        ws.users.add(ws.acting_user("admin"), "eve", "ultra")
    ws.users.disable(ws.acting_user("admin"), "dana")
    from casemate.errors import CasemateError

    with pytest.raises(CasemateError, match="disabled"):
        ws.acting_user("dana")


def test_passwords_and_tokens(ws) -> None:
    admin = ws.acting_user("admin")
    ws.users.set_password(admin, "dana", "correct horse battery")
    assert ws.users.authenticate("dana", "correct horse battery").name == "dana"
    assert ws.users.authenticate("dana", "wrong password!!") is None
    assert ws.users.authenticate("nobody", "correct horse battery") is None
    with pytest.raises(UsageError, match="too short"):
        ws.users.set_password(admin, "dana", "short")
    token = ws.tokens.create(ws.acting_user("dana"))
    assert ws.tokens.authenticate(token).name == "dana"
    assert ws.tokens.authenticate(token + "x") is None
    with pytest.raises(PermissionDenied):
        ws.tokens.create(ws.acting_user("dana"), for_user="sam")
    ws.users.disable(admin, "dana")
    assert ws.tokens.authenticate(token) is None
    assert ws.users.authenticate("dana", "correct horse battery") is None


def test_put_with_source_key_joins_the_asset_and_dedupes(ws) -> None:
    sam = ws.acting_user("sam")
    a = ws.catalog.put(sam, b"v1", name="r.wav", kind="audio", label="S", source_key="/data/r.wav")
    same = ws.catalog.put(sam, b"v1", name="r.wav", kind="audio", label="S", source_key="/data/r.wav")
    assert same.id == a.id
    newer = ws.catalog.put(sam, b"v2", name="r.wav", kind="audio", label="S", source_key="/data/r.wav")
    assert newer.id != a.id and newer.asset_id == a.asset_id
    with pytest.raises(UsageError, match="lower label"):
        ws.catalog.put(sam, b"v3", name="r.wav", kind="audio", label="DR", source_key="/data/r.wav")


def test_children_are_filtered(ws) -> None:
    tess, sam = ws.acting_user("tess"), ws.acting_user("sam")
    parent = ws.catalog.put(tess, b"p", name="p", kind="audio", label="S")
    low = ws.catalog.put(tess, b"c1", name="c1", kind="transcript", parents=[parent.id])
    ws.catalog.put(tess, b"c2", name="c2", kind="transcript", label="TS//BRAVO", parents=[parent.id])
    assert [c.id for c in ws.catalog.children(sam, parent.id)] == [low.id]
    assert len(ws.catalog.children(tess, parent.id, kind="transcript")) == 2
    with pytest.raises(NotFound):
        ws.catalog.children(ws.acting_user("dana"), parent.id)


def test_ingest_hooks_chain_their_outputs(ws, tmp_path) -> None:
    from casemate.catalog.ingest import ingest
    from casemate.config import HooksConfig

    from . import hookfns

    ws.config = ws.config.model_copy(update={"hooks": HooksConfig(after_ingest=(
        "foundation.hookfns:derive", "foundation.hookfns:broken", "foundation.hookfns:record",
        "casemate.not_a_module:fn"))})
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 10)
    hookfns.SEEN.clear()
    report = ingest(ws, ws.acting_user("admin"), [src], "DR")
    assert [v.name for v in report.derived] == ["a.txt.sum"]
    # a failing step and a hook that cannot be loaded are both reported; the others still run
    assert report.hook_errors[0] == ("foundation.hookfns:broken", "this step failed on purpose")
    assert report.hook_errors[1][0] == "casemate.not_a_module:fn"
    assert "fix hooks.after_ingest in config.json" in report.hook_errors[1][1]
    assert len(report.hook_errors) == 2
    assert sorted(hookfns.SEEN[0]) == ["a.txt", "a.txt.sum", "b.png"]
    assert str(report.derived[0].label) == "DR"


def test_gc_removes_only_old_unreferenced_blobs(ws) -> None:
    import os

    from casemate.catalog.gc import collect_garbage

    admin = ws.acting_user("admin")
    kept = ws.catalog.put(admin, b"referenced", name="k", kind="other", label="NP")
    # blobs made durable by an ingest that died before its rows were committed
    orphan_old = ws.blobs.stage_bytes(b"orphan old")
    orphan_new = ws.blobs.stage_bytes(b"orphan new")
    ws.blobs.commit()
    old_path = ws.blobs.path(orphan_old.sha256)
    os.utime(old_path, (1, 1))
    with pytest.raises(PermissionDenied):
        collect_garbage(ws, ws.acting_user("dana"))
    dry = collect_garbage(ws, admin, dry_run=True)
    assert (dry.unreferenced, dry.removed, dry.kept_recent) == (2, 1, 1) and old_path.exists()
    report = collect_garbage(ws, admin)
    assert report.removed == 1 and report.bytes_freed == len(b"orphan old")
    assert not old_path.exists()
    assert ws.blobs.path(orphan_new.sha256).exists()  # too young: a running ingest may be about to use it
    assert ws.catalog.read_bytes(admin, kept.id) == b"referenced"
    assert ws.audit.verify().ok
