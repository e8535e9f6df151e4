"""The chat page in headless Chromium (Debian's chromium + chromedriver; never a downloaded browser)."""

from __future__ import annotations

from typing import Any

import pytest
from casemate_browser import headless_chromium

from casemate.security.labels import parse_label


@pytest.fixture
def browser() -> Any:
    yield from headless_chromium()


def test_chat_page_logs_in_streams_and_shows_label_and_citations(live_server: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server["url"] + "/")
    browser.find_element(By.ID, "username").send_keys("dora")
    browser.find_element(By.ID, "password").send_keys("pw-dora-correct-horse")
    browser.find_element(By.ID, "login-button").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "chat").is_displayed())
    browser.find_element(By.ID, "question").send_keys("Le ravitaillement en carburant au dépôt nord ?")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     == "done")
    label = browser.find_element(By.ID, "label").text
    assert "Diffusion Restreinte" in label and "DR" in label
    cites = browser.find_elements(By.CSS_SELECTOR, "#citations li.citation")
    assert cites and any(c.get_attribute("data-version") == live_server["ids"]["logistique"] for c in cites)
    assert browser.find_element(By.ID, "answer").text.strip()
    page = browser.page_source
    for token in ("CANARYS7781", "CANARYALPHA4242", "CANARYTS9001"):
        assert token not in page
    # no remote image can have been rendered
    assert not browser.find_elements(By.CSS_SELECTOR, "#answer img, #citations img")
    # a follow-up in the same conversation is linked to the first answer's conversation version
    body = browser.find_element(By.TAG_NAME, "body")
    first = body.get_attribute("data-conversation")
    assert first
    browser.find_element(By.ID, "question").send_keys("Et le convoi ?")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(
        "data-conversation") not in (None, first) and d.find_element(By.TAG_NAME, "body").get_attribute(
        "data-state") == "done")
    ws = live_server["ws"]
    conv = ws.catalog.get(ws.acting_user("dora"), body.get_attribute("data-conversation"))
    assert first in conv.parents and conv.label.dominates(parse_label("DR"))
