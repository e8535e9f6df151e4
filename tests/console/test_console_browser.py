"""The console in headless Chromium (Debian's chromium + chromedriver): one journey per role, and a
canary walk of every page as a low-cleared user. Screenshots of each page go to the `shots` folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from casemate_browser import headless_chromium
from console_fakes import CANARY, PASSWORDS


@pytest.fixture
def browser() -> Any:
    yield from headless_chromium()


def wait(browser: Any, cond: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(cond)


def state(browser: Any) -> str:
    return browser.find_element("tag name", "body").get_attribute("data-state")


def sign_in(browser: Any, url: str, name: str) -> None:
    browser.get(url + "/console/")
    wait(browser, lambda d: state(d) == "login")
    browser.find_element("id", "username").send_keys(name)
    browser.find_element("id", "password").send_keys(PASSWORDS[name])
    browser.find_element("id", "login-button").click()
    wait(browser, lambda d: state(d) == "ready" and d.find_element("tag name", "body").get_attribute("data-view")
         == "catalog")


def go(browser: Any, url: str, route: str, until: str = "ready") -> None:
    browser.get(url + "/console/#/" + route)
    wait(browser, lambda d: state(d) in (until, "error"))


def banner(browser: Any) -> str:
    return browser.find_element("id", "banner-top").get_attribute("data-label")


def no_errors(browser: Any) -> None:
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]
              and "404" not in e["message"]]
    assert errors == []


def test_analyst_journey(console: dict[str, Any], browser: Any, shots: Path, tmp_path: Path) -> None:
    url, ids = console["url"], console["ids"]
    browser.set_window_size(1400, 1000)
    sign_in(browser, url, "dora")
    assert banner(browser) == "DR"  # the list shows DR rows: the banner carries the highest label
    browser.save_screenshot(str(shots / "catalog.png"))
    # upload: a label is required, per-file results
    go(browser, url, "upload")
    note = tmp_path / "patrouille-secteur-est.txt"
    note.write_text("Compte rendu de patrouille : le pont du secteur est est coupé depuis lundi.")
    bad = tmp_path / "abime.pdf"
    bad.write_bytes(b"%PDF-1.4 broken")
    browser.find_element("id", "files").send_keys(f"{note}\n{bad}")
    browser.find_element("id", "upload-button").click()
    assert browser.find_element("css selector", "#upload-results li.error").text
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "upload-label")).select_by_value("DR")
    browser.find_element("id", "upload-button").click()
    wait(browser, lambda d: state(d) == "uploaded")
    rows = {li.get_attribute("data-file"): li.get_attribute("data-ok")
            for li in browser.find_elements("css selector", "#upload-results li")}
    assert rows == {"patrouille-secteur-est.txt": "true", "abime.pdf": "false"}
    browser.save_screenshot(str(shots / "upload.png"))
    # search by name, open the item
    go(browser, url, "catalog?name=patrouille-secteur")
    links = browser.find_elements("css selector", "#rows a")
    assert [a.text for a in links] == ["patrouille-secteur-est.txt"]
    links[0].click()
    wait(browser, lambda d: state(d) == "ready" and d.find_elements("id", "text"))
    assert "pont du secteur est" in browser.find_element("id", "text").text
    # ask, open a citation: the cited passage is highlighted
    go(browser, url, "chat")
    browser.find_element("id", "question").send_keys("Quand part le convoi de carburant du dépôt nord ?")
    browser.find_element("id", "send").click()
    wait(browser, lambda d: state(d) in ("done", "error"), 30)
    assert "dépôt nord [1]" in browser.find_element("id", "answer").text
    assert "DR" in browser.find_element("id", "answer-label").text
    browser.save_screenshot(str(shots / "assistant.png"))
    cite = browser.find_element("css selector", "#citations li.citation a")
    assert cite.get_attribute("data-version") == ids["convoi"]
    cite.click()
    wait(browser, lambda d: state(d) == "ready" and d.find_elements("id", "hl"))
    assert "convoi de ravitaillement" in browser.find_element("id", "hl").text
    browser.save_screenshot(str(shots / "citation.png"))
    # detections over the image itself; a click shows one and its provenance
    go(browser, url, "map/" + ids["image"], until="ready")
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-map") == "ready")
    assert browser.find_element("id", "det-count").text.startswith("300 / 300")
    assert banner(browser) == "DR"
    # the centre of detection 0, in map coordinates (y up), to screen pixels
    px = browser.execute_script("""const d = window.cmDetections, r = d.rings;
        const x = (r[0] + r[4]) / 2, y = d.H - (r[1] + r[5]) / 2;
        return window.cmMap.getPixelFromCoordinate([x, y]);""")
    from selenium.webdriver.common.action_chains import ActionChains

    mapel = browser.find_element("id", "map")
    size = mapel.size
    ActionChains(browser).move_to_element_with_offset(mapel, px[0] - size["width"] / 2,
                                                      px[1] - size["height"] / 2).click().perform()
    wait(browser, lambda d: d.find_elements("id", "det-table"))
    info = browser.find_element("id", "det-info").text
    assert "scene-port.detections.geojson" in info
    # a class filter hides its detections
    browser.find_element("id", "cls-0").click()
    assert browser.find_element("id", "det-count").text.startswith("200 / 300")
    browser.save_screenshot(str(shots / "map.png"))
    # play the transcript from a segment
    go(browser, url, "item/" + ids["audio"])
    wait(browser, lambda d: d.find_elements("css selector", "#segments li"))
    seg = browser.find_elements("css selector", "#segments li")[1]
    seg.click()
    wait(browser, lambda d: d.execute_script("return document.getElementById('player').currentTime") >= 2.0)
    assert "playing" in seg.get_attribute("class")
    browser.save_screenshot(str(shots / "transcript.png"))
    # English on request, French by default
    assert browser.find_element("css selector", "#nav a").text == "Catalogue"
    browser.find_element("id", "lang").click()
    assert browser.find_element("css selector", "#nav a[href='#/upload']").text == "Upload"
    browser.find_element("id", "lang").click()
    no_errors(browser)


def test_officer_declassifies(console: dict[str, Any], browser: Any, shots: Path) -> None:
    ws, url = console["ws"], console["url"]
    v = ws.catalog.put(ws.acting_user("admin"), b"Bilan mensuel.", name="bilan-mensuel.txt", kind="document",
                       label="S", text="Bilan mensuel.")
    sign_in(browser, url, "olga")
    go(browser, url, "item/" + v.id)
    assert banner(browser) == "S"
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "declass-to")).select_by_value("DR")
    browser.find_element("id", "declass-button").click()  # no reason: the browser refuses the form
    assert not browser.find_element("id", "declass-result").text
    browser.find_element("id", "declass-reason").send_keys("publié au bulletin 42")
    browser.find_element("id", "declass-button").click()
    wait(browser, lambda d: d.find_elements("id", "declass-new"))
    new_id = browser.find_element("id", "declass-new").text
    browser.save_screenshot(str(shots / "declassify.png"))
    got = ws.catalog.get(ws.acting_user("dora"), new_id)
    assert str(got.label) in ("DR", "Diffusion Restreinte") or got.label.level.name == "DR"
    assert got.metadata["declassified"]["reason"] == "publié au bulletin 42"


def test_admin_adds_a_user_creates_a_token_verifies_the_audit(console: dict[str, Any], browser: Any,
                                                               shots: Path) -> None:
    ws, url = console["ws"], console["url"]
    sign_in(browser, url, "adam")
    go(browser, url, "users")
    browser.find_element("id", "new-user-name").send_keys("victor")
    browser.find_element("id", "new-user-clearance").send_keys("DR")
    browser.find_element("id", "new-user-password").send_keys("pw-victor-correct-horse")
    browser.find_element("id", "add-user").click()
    wait(browser, lambda d: d.find_elements("css selector", "tr[data-user='victor']"))
    browser.save_screenshot(str(shots / "users.png"))
    assert ws.users.get("victor").clearance.level.name == "DR"
    go(browser, url, "tokens")
    browser.find_element("id", "token-note").send_keys("robot de tri")
    browser.find_element("id", "token-user").send_keys("victor")
    browser.find_element("id", "create-token").click()
    wait(browser, lambda d: d.find_elements("id", "token-secret"))
    secret = browser.find_element("id", "token-secret").text
    assert ws.tokens.authenticate(secret).name == "victor"
    browser.save_screenshot(str(shots / "tokens.png"))
    go(browser, url, "audit")
    browser.find_element("id", "audit-verify").click()
    wait(browser, lambda d: d.find_element("id", "verify-result").get_attribute("data-ok") == "true")
    actions = [td.text for td in browser.find_elements("css selector", "#audit td:nth-child(4)")]
    assert "user.add" in actions and "token.create" in actions
    browser.save_screenshot(str(shots / "audit.png"))
    no_errors(browser)


def _dora_work(console: dict[str, Any]) -> dict[str, str]:
    """What dora makes on the work pages, through the services: a change, a mission and a run."""
    from casemate.imagery.service import compare_sources
    from casemate.pack.service import plan_from_detections, run_scenario

    ws, ids = console["ws"], console["ids"]
    dora = ws.acting_user("dora")
    change = compare_sources(ws, dora, ids["geo1"], ids["geo2"]).change.id
    mission = plan_from_detections(ws, dora, ids["geo2"], robots="quadcopter:2", duration=60).mission.id
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = run_scenario(ws, dora, mission, seed=0, out_dir=Path(tmp) / "run")
    return {"change": change, "mission": mission, "results": run.results.id, "replay": run.replay.id}


HIDDEN = ("secret", "zulu", "tsdoc", "secret_dets", "secret_change", "secret_mission", "geo_secret", "zones_secret")


def test_canary_walk_as_a_low_user(console: dict[str, Any], factory: dict[str, Any], browser: Any,
                                   shots: Path) -> None:
    """Every page dora (DR) can reach, and every hidden item's URL typed by hand: no canary text,
    name, class or compartment of a higher item in anything that reaches the browser."""
    url, ids = console["url"], console["ids"]
    work = _dora_work(console)
    sign_in(browser, url, "dora")
    seen: list[str] = []
    visible = [ids[k] for k in ("convoi", "public", "image", "dets", "audio", "transcript", "geo1", "geo2", "zones")]
    routes = ["catalog", "catalog?q=convoi carburant dépôt nord opération", "catalog?kind=detections", "upload",
              "chat", "jobs", "tokens", "audit", "users", "compare", "pack", "models", "catalog?kind=mission",
              "catalog?kind=change", "catalog?name=CANARY"]
    routes += [f"item/{i}" for i in visible] + [f"map/{ids['image']}", f"map/{ids['dets']}"]
    routes += [f"change/{work['change']}", f"mission/{work['mission']}", f"run/{work['results']}"]
    routes += [f"item/{work[k]}" for k in work]
    routes += [f"item/{ids[k]}" for k in HIDDEN]
    routes += [f"map/{ids['secret_dets']}", f"change/{ids['secret_change']}", f"mission/{ids['secret_mission']}",
               f"run/{ids['secret_mission']}", f"map/{ids['geo_secret']}"]
    for r in routes:
        go(browser, url, r)
        if r.startswith(("map/", "change/")) and state(browser) != "error":
            wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-map") == "ready")
        if r == "chat":
            browser.find_element("id", "question").send_keys("convoi carburant dépôt nord opération")
            browser.find_element("id", "send").click()
            wait(browser, lambda d: state(d) in ("done", "error"), 30)
        seen.append(browser.page_source)
        assert banner(browser) in ("NP", "DR"), r
    for hidden in HIDDEN:
        go(browser, url, f"item/{ids[hidden]}")
        assert browser.find_element("id", "error").text == f"no such item: {ids[hidden]}"
    browser.save_screenshot(str(shots / "hidden-item.png"))
    # what the page's own calls returned, read back from the browser
    api = [f"/items/{ids['image']}/detections?format=compact", "/items?limit=200", f"/items/{ids['image']}/lineage",
           "/pack/missions", "/pack/scenarios", "/factory/datasets", "/factory/models", "/factory/jobs", "/jobs",
           "/items?kind=change&limit=200", "/items?kind=mission&limit=200", "/items?kind=detections&limit=200",
           "/items?name=.geojson&limit=200", "/items?kind=dataset&limit=200", "/items?kind=finding&limit=200",
           f"/items/{work['change']}/change", f"/items/{work['change']}/detections?format=compact",
           f"/items/{work['mission']}", f"/pack/missions/{work['mission']}", f"/pack/missions/{work['mission']}/tasks",
           f"/items/{work['results']}/results", f"/items/{work['replay']}/replay", f"/items/{ids['geo1']}",
           f"/items/{ids['geo2']}/lineage", f"/items/{work['change']}/lineage"]
    for path in [f"/items/{i}" for i in visible] + api:
        seen.append(browser.execute_script(
            "return fetch('/console/api' + arguments[0]).then(r => r.text())", path))
    blob = "\n".join(seen)
    for canary in (CANARY["text"], CANARY["name"], CANARY["det"], CANARY["comp"], "TEMPETE", "Très Secret"):
        assert canary not in blob, canary
    for hidden in HIDDEN:
        # the hidden id appears only where dora typed it (the route and the not-found message)
        assert blob.count(ids[hidden]) == sum(p.count(ids[hidden]) for p in seen if "no such item" in p)
