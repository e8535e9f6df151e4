"""The label advisor: trained as a job on the documents the trainer may read, labelled with their
lub, signed like any model; check-labels flags text that looks more sensitive than its label."""

from __future__ import annotations

import json

import numpy as np
import pytest

from casemate.errors import NotFound
from casemate.factory.advisor import check_labels
from casemate.factory.jobs import JobStore
from casemate.factory.runner import run_job
from casemate.security.labels import format_label

pytestmark = pytest.mark.slow

POOLS = {
    "NP": ["The cafeteria serves fish on Friday.", "The football tournament starts next week.",
           "Public open day at the museum of the army.", "The weather will be sunny in the afternoon.",
           "Bus timetable for the summer holidays.", "The library extends its opening hours."],
    "DR": ["Internal memo: the staff meeting moves to room 204.", "Training schedule for the logistics unit.",
           "Restricted distribution: maintenance plan for the vehicle fleet.", "Leave requests for the personnel.",
           "Inventory of office equipment in building C.", "Internal phone directory of the regiment."],
    "S": ["Operation order: the armoured battalion moves to grid 31U DQ 4512 at dawn.",
          "Secret: enemy radar positions detected near the northern ridge.",
          "Convoy route and fuel resupply points for the assault.", "Codeword BLACKBIRD authorises the raid.",
          "Troop strength and ammunition reserves of the forward brigade.", "Target list for the air strike."],
    "TS": ["Top secret: identity of our human source inside the adversary's ministry.",
           "Nuclear deterrence launch authentication procedures.", "Cryptographic master keys for the command network.",
           "Special forces infiltration behind enemy lines, names of the agents.",
           "Intercepted communications of the head of state, decrypted.", "Covert action plan approved by the president."],
}


def _doc(rng: np.random.Generator, level: str) -> str:
    return " ".join(rng.choice(POOLS[level], size=3, replace=False))


@pytest.fixture
def corpus(ws) -> None:
    rng = np.random.default_rng(0)
    admin = ws.acting_user("admin")
    for level in POOLS:
        for i in range(8):
            text = _doc(rng, level)
            ws.catalog.put(admin, text.encode(), name=f"{level}-{i}.txt", kind="document", label=level, text=text)


def _train(ws, user_name: str) -> dict:
    user = ws.acting_user(user_name)
    from casemate.factory.executors import LocalExecutor

    job = JobStore(ws).create(user, kind="train-label-advisor", label=ws.catalog.check_label(user, None)[0],
                              executor="local", spec={"kind": "document", "holdout": 0.25, "seed": 0, "resources": {}})
    assert LocalExecutor  # the same runner the executors launch, run here in-process
    res = run_job(str(ws.home), job.id)
    assert res is not None, JobStore(ws).get_raw(job.id).log
    return res


def test_advisor_learns_levels_and_flags_spillage(ws, corpus) -> None:
    res = _train(ws, "admin")
    m = res["metrics"]
    assert m["holdout"] == 8 and m["macro_f1"] >= 0.6, m
    admin = ws.acting_user("admin")
    model = ws.catalog.get(admin, res["model"])
    assert format_label(model.label) == "TS" and len(model.parents) == 32  # derived from every document
    assert model.metadata["registry"]["role"] == "label-advisor"
    # spillage: secret-looking text stored as NP is flagged; plain NP text is not
    rng = np.random.default_rng(7)
    spilled = _doc(rng, "S")
    v = ws.catalog.put(admin, spilled.encode(), name="spilled.txt", kind="document", label="NP", text=spilled)
    flags = {f.id: f for f in check_labels(ws, admin, model=res["model"])}
    assert v.id in flags and flags[v.id].score >= 0.5 and flags[v.id].predicted in ("S", "TS")
    np_ids = {x.id for x in ws.catalog.list(admin, kind="document", limit=100) if x.name.startswith("NP-")}
    assert len(np_ids & set(flags)) <= 1


def test_advisor_label_is_the_lub_of_what_its_trainer_may_read(ws, corpus) -> None:
    res = _train(ws, "dana")  # DR: learns from NP and DR documents only
    dana = ws.acting_user("dana")
    model = ws.catalog.get(dana, res["model"])
    assert format_label(model.label) == "DR" and len(model.parents) == 16
    res_ts = _train(ws, "admin")
    with pytest.raises(NotFound):
        check_labels(ws, dana, model=res_ts["model"])


def test_cli_train_label_advisor_and_check_labels(cm, tmp_path) -> None:
    from casemate.workspace import Workspace

    assert cm("init")[0] == 0
    ws = Workspace.open(tmp_path / "ws")
    rng = np.random.default_rng(1)
    for level in ("NP", "S"):
        for i in range(6):
            text = _doc(rng, level)
            ws.catalog.put(ws.acting_user("admin"), text.encode(), name=f"{level}-{i}.txt", kind="document",
                           label=level, text=text)
    ws.close()
    rc, out, err = cm("train", "label-advisor", "--executor", "local", "--wait", "--json")
    assert rc == 0, err
    job = json.loads(out)
    assert job["label"] == "S" and job["result"]["metrics"]["macro_f1"] is not None
    rc, out, err = cm("check-labels", "--json")
    assert rc == 0, err
    assert isinstance(json.loads(out), list)
