"""The work pages in headless Chromium: imagery compare, the robot pack (plan, approvals by an
officer, run with progress, the replay played in the page, results) and the model factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from casemate_browser import headless_chromium
from test_console_browser import banner, go, no_errors, sign_in, state, wait


@pytest.fixture
def browser() -> Any:
    yield from headless_chromium()


def attr(browser: Any, css: str, name: str | None = None) -> str | None:
    """An element's attribute (or text), None while the page is being redrawn (a stale element)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        el = browser.find_element("css selector", css)
        return el.text if name is None else el.get_attribute(name)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def sign_out(browser: Any) -> None:
    browser.find_element("id", "logout").click()
    wait(browser, lambda d: state(d) == "login")


def test_compare_plan_approve_run_replay(console: dict[str, Any], browser: Any, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select

    url, ids = console["url"], console["ids"]
    browser.set_window_size(1400, 1000)
    sign_in(browser, url, "dora")
    # compare two dates over a zone: a job with progress, then the change on the map and the zone table
    go(browser, url, "compare")
    assert browser.find_element("css selector", "label[for='cmp-before']").text
    Select(browser.find_element("id", "cmp-before")).select_by_value(ids["geo1"])
    Select(browser.find_element("id", "cmp-after")).select_by_value(ids["geo2"])
    Select(browser.find_element("id", "cmp-zones")).select_by_value(ids["zones"])
    browser.save_screenshot(str(shots / "compare.png"))
    browser.find_element("id", "cmp-run").click()
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-view") == "change"
         and d.find_element("tag name", "body").get_attribute("data-map") == "ready", 60)
    cells = {td.get_attribute("data-col"): td.text for td in
             browser.find_elements("css selector", "#change-table tr[data-class='vehicle'] td")}
    assert cells["zone"] in ("quai ouest", "(outside zones)") and cells["appeared"].isdigit()
    total = sum(int(td.text) for td in browser.find_elements("css selector", "#change-table td[data-col='appeared']"))
    assert total == 3
    assert browser.find_element("id", "det-count").text.startswith("6 / 6")
    assert banner(browser) == "DR" and browser.find_elements("css selector", "#alerts li")
    browser.save_screenshot(str(shots / "change.png"))
    # plan a mission from the later date's detections, vehicles need an officer's approval
    go(browser, url, "pack")
    Select(browser.find_element("id", "plan-detections")).select_by_value(ids["geo2"])
    browser.find_element("id", "plan-robots").clear()
    browser.find_element("id", "plan-robots").send_keys("quadcopter:3")
    browser.find_element("id", "plan-approve").send_keys("vehicle")
    browser.find_element("id", "plan-duration").clear()
    browser.find_element("id", "plan-duration").send_keys("300")
    browser.find_element("id", "plan-button").click()
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-view") == "mission"
         and state(d) == "ready")
    mission_url = browser.current_url
    rows = browser.find_elements("css selector", "#tasks tbody tr")
    assert len(rows) == 11 and not browser.find_elements("css selector", "[id^='approve-']")  # dora: no buttons
    sign_out(browser)
    # the officer approves one task and rejects another, each with a reason
    sign_in(browser, url, "olga")
    browser.get(mission_url)
    wait(browser, lambda d: state(d) == "ready" and d.find_elements("id", "approve-d0"))
    browser.find_element("id", "approve-d0").click()  # no reason: refused in the page, nothing sent
    assert browser.find_element("id", "dec-out-d0").text
    browser.find_element("id", "dec-reason-d0").send_keys("cible confirmée")
    browser.find_element("id", "approve-d0").click()
    wait(browser, lambda d: attr(d, "tr[data-task='d0']", "data-decision") == "approve")
    browser.find_element("id", "dec-reason-d1").send_keys("zone civile")
    browser.find_element("id", "reject-d1").click()
    wait(browser, lambda d: attr(d, "tr[data-task='d1']", "data-decision") == "reject")
    browser.save_screenshot(str(shots / "approvals.png"))
    sign_out(browser)
    # the analyst runs it: progress, then the results and the replay played in the page
    sign_in(browser, url, "dora")
    browser.get(mission_url)
    wait(browser, lambda d: state(d) == "ready" and d.find_elements("id", "mission-run"))
    browser.find_element("id", "mission-run").click()
    wait(browser, lambda d: d.find_elements("id", "job-progress") or d.find_element("tag name", "body")
         .get_attribute("data-view") == "run")
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-view") == "run"
         and d.find_element("tag name", "body").get_attribute("data-replay") == "ready", 180)
    gates = {tr.get_attribute("data-task"): tr.get_attribute("data-gate")
             for tr in browser.find_elements("css selector", "#run-tasks tbody tr")}
    assert gates["d1"] == "rejected" and gates["d0"] in ("approved", "free")
    assert browser.find_element("css selector", "#metrics tr[data-metric='steps'] td").text
    browser.find_element("id", "replay-play").click()
    wait(browser, lambda d: int(attr(d, "#replay", "data-frame") or 0) >= 3)
    browser.find_element("id", "replay-play").click()
    assert banner(browser) == "DR"
    browser.execute_script("document.getElementById('player-box').scrollIntoView({block: 'center'})")
    browser.save_screenshot(str(shots / "replay.png"))
    no_errors(browser)


def test_models_page_and_promote_by_an_officer(console: dict[str, Any], factory: dict[str, Any], browser: Any,
                                                shots: Path) -> None:
    url = console["url"]
    browser.set_window_size(1400, 1000)
    sign_in(browser, url, "dora")
    go(browser, url, "models")
    assert [tr.get_attribute("data-id") for tr in browser.find_elements("css selector", "#datasets tbody tr")] \
        == [factory["dataset"]]
    assert browser.find_elements("css selector", f"tr[data-model='{factory['model']}']")
    assert not browser.find_elements("css selector", "[id^='promote-']")  # an analyst cannot promote
    assert browser.find_element("css selector", "label[for='train-dataset']").text
    sign_out(browser)
    sign_in(browser, url, "olga")
    go(browser, url, "models")
    field = browser.find_element("id", f"alias-{factory['model']}")
    field.clear()
    field.send_keys("vitrine")
    browser.find_element("id", f"promote-{factory['model']}").click()
    wait(browser, lambda d: "vitrine" in (attr(d, f"tr[data-model='{factory['model']}'] .aliases") or ""))
    browser.save_screenshot(str(shots / "models.png"))
    # English on request
    browser.find_element("id", "lang").click()
    assert browser.find_element("css selector", "#nav a[href='#/models']").text == "Models"
    browser.find_element("id", "lang").click()
    no_errors(browser)
