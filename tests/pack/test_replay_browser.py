"""The offline HTML replay of a run, played in headless Chromium from a file: it draws the terrain
and the robots in their domain colours, plays, seeks, and asks the network for nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from casemate_browser import headless_chromium

from casemate.pack.replay import write_outputs
from casemate.pack.scenario import parse_scenario
from casemate.pack.sim import Simulation


@pytest.fixture
def browser() -> Any:
    yield from headless_chromium()


def test_replay_plays_offline_in_a_browser(harbour: dict, tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    harbour["duration"] = 60
    result = Simulation(parse_scenario(harbour, "harbour.yaml"), 0).run()
    paths = write_outputs(result, tmp_path / "out")
    browser.get(paths["html"].as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "time").text == "t = 0.0 s")
    assert browser.find_element(By.ID, "title").text == "harbour-search [NP] seed 0"
    frames = result.frames
    slider = browser.find_element(By.ID, "slider")
    assert int(slider.get_attribute("max")) == len(frames) - 1 > 10

    def pixel_at(x: float, y: float) -> list[int]:
        # the colour the page drew where a robot stands (world metres -> canvas pixels, as the page maps them)
        return browser.execute_script(
            """const c = document.getElementById('c'), [x0, y0, x1, y1] = DATA.header.extent;
               const s = c.width / (x1 - x0);
               return Array.from(c.getContext('2d').getImageData(Math.round((arguments[0] - x0) * s),
                   Math.round(c.height - (arguments[1] - y0) * s), 1, 1).data);""", x, y)

    def near(px: list[int], rgb: list[int]) -> bool:  # canvas colours may be a unit off
        return all(abs(a - b) <= 3 for a, b in zip(px[:3], rgb, strict=True))

    # boats are drawn light blue, quadcopters yellow, over the terrain
    colours = {"usv": [0x4F, 0xC3, 0xF7], "quadcopter": [0xFF, 0xD5, 0x4F]}
    types = result.header["types"]
    f0 = frames[0]
    for k, t in enumerate(result.header["robot_type"]):
        assert near(pixel_at(f0["x"][k], f0["y"][k]), colours[types[t]]), (k, types[t])
    # water and land drawn from the terrain grid
    assert near(pixel_at(1000, 50), [0x0B, 0x29, 0x42]) and near(pixel_at(1000, 1300), [0x5D, 0x6B, 0x3A])

    # play: time runs; seek: the chosen frame is drawn
    browser.find_element(By.ID, "play").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "time").text != "t = 0.0 s")
    browser.find_element(By.ID, "play").click()
    last = len(frames) - 1
    browser.execute_script("const s = document.getElementById('slider'); s.value = arguments[0];"
                           "s.dispatchEvent(new Event('input'));", last)
    assert browser.find_element(By.ID, "time").text == f"t = {frames[last]['t']:.1f} s"
    assert browser.find_element(By.ID, "cov").text.startswith("coverage ")

    # nothing fetched from anywhere, no script error
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
