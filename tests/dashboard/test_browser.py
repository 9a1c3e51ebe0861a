"""What a person sees, in a real headless Chromium: known mood sequences go into a test Redis
prefix and the page is read back from its DOM/SVG state and from screenshots."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import redis

from tests.conftest import ROOT
from tests.dashboard.feed import (
    RedisServer,
    free_port,
    mood,
    moods_line,
    publish,
    run_dashboard,
    wait_for,
)

COLOURS = {"AP": (0xE6, 0x9F, 0x00), "AN": (0xCC, 0x79, 0xA7), "PN": (0x00, 0x72, 0xB2),
           "PP": (0x00, 0x9E, 0x73)}
"""The quadrant colours of dashboard.css (Okabe-Ito)."""

STATE_JS = """
const c = document.querySelector(`.card[data-source="${arguments[0]}"]`);
if (!c) return null;
const p = c.querySelector('.point');
const rim = c.querySelector('.rim').getBoundingClientRect();
const dot = c.querySelector('.point-dot').getBoundingClientRect();
const trail = c.querySelector('.trail');
const lines = [...trail.querySelectorAll('line')].map((l) => +l.getAttribute('stroke-opacity'));
return {
  quadrant: p.dataset.quadrant, visible: p.getAttribute('visibility'),
  x: (dot.x + dot.width / 2 - (rim.x + rim.width / 2)) / (rim.width / 2),
  y: -(dot.y + dot.height / 2 - (rim.y + rim.height / 2)) / (rim.height / 2),
  rim: [rim.x, rim.y, rim.width, rim.height],
  badge: c.querySelector('.q-code').textContent, words: c.querySelector('.q-words').textContent,
  seq: +c.dataset.seq, messages: +c.dataset.messages, trail: +trail.dataset.points,
  opacities: lines,
  segments: [...c.querySelectorAll('.segment-marker')].map((g) => +g.dataset.t),
  band: [...c.querySelectorAll('.band rect')].map((r) => r.dataset.q),
  top: (c.querySelector('.prob.top') || { dataset: {} }).dataset.q,
  delay: c.querySelector('.f-delay').textContent,
  segment: c.querySelector('.f-segment').textContent,
  health: c.querySelector('.health').dataset.state,
  healthText: c.querySelector('.health-text').textContent,
  cards: [...document.querySelectorAll('.card')].map((e) => e.dataset.source),
};
"""


def state(driver, source: str) -> dict | None:
    return driver.execute_script(STATE_JS, source)


def until(driver, source: str, check, timeout: float = 10.0, what: str = "the page"):
    """Poll the card's state until ``check(state)`` holds; returns that state."""
    last = {}

    def ok():
        last["s"] = s = state(driver, source)
        return s if s and check(s) else None

    try:
        return wait_for(ok, timeout, 0.05, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last state: {last.get('s')}") from None


def body(driver, key: str) -> str:
    return driver.execute_script(f"return document.body.dataset.{key}")


def console_errors(driver) -> list[str]:
    """Errors in the page's console since the last call (script errors, CSP violations, 404s)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, url: str) -> None:
    driver.get("about:blank")  # an earlier page (its server gone) stops reconnecting...
    console_errors(driver)  # ...and its messages are forgotten
    driver.get(url)
    wait_for(lambda: body(driver, "feed") == "live", 15, 0.05, "the live feed")
    driver.execute_script("window.__noReload = 1")


def colour_in_quarters(driver, rim: list[float], colour: tuple[int, int, int]) -> dict:
    """Pixels of ``colour`` (±12 per channel) in each quarter of the circumplex, screenshot."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    match = (np.abs(img.astype(int) - np.array(colour)) <= 12).all(axis=2)
    x, y, w, h = (round(v) for v in rim)
    out = {}
    for name, (qx, qy) in {"AN": (0, 0), "AP": (1, 0), "PN": (0, 1), "PP": (1, 1)}.items():
        x0, y0 = x + qx * w // 2, y + qy * h // 2
        out[name] = int(match[y0 : y0 + h // 2, x0 : x0 + w // 2].sum())
    return out


def assert_point_seen_in(driver, source: str, quadrant: str) -> None:
    """The screenshot shows the point's colour in ``quadrant``'s quarter and nowhere else."""

    def seen():
        s = state(driver, source)
        counts = colour_in_quarters(driver, s["rim"], COLOURS[quadrant])
        others = sum(v for k, v in counts.items() if k != quadrant)
        return counts if counts[quadrant] > 300 and others < 20 else None

    wait_for(seen, 10, 0.1, f"the {quadrant} point in its quarter of the screenshot")


@pytest.fixture()
def env(redis_namespace, browser):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    with run_dashboard(url, prefix) as dash:
        wait_for(lambda: dash.hub.stats.redis_up, what="the hub's subscription")
        yield dash, client, prefix, browser
    client.close()


def test_source_appears_and_the_point_moves_into_the_right_quadrant(env):
    dash, client, prefix, driver = env
    open_page(driver, dash.url)
    assert state(driver, "radio1") is None
    now = time.time()
    publish(client, prefix, moods_line(10, "radio1", 0, "AP", captured_at=now - 0.4))
    s = until(driver, "radio1", lambda s: s["seq"] == 9, what="radio1 at step 9")
    assert s["cards"] == ["radio1"] and s["visible"] == "visible"
    assert (s["quadrant"], s["badge"], s["words"], s["top"]) == ("AP", "AP", "happy · excited",
                                                                 "AP")
    assert s["trail"] == 10
    assert 0.35 <= float(s["delay"].split()[0]) < 5  # captured 0.4 s before it was published
    until(driver, "radio1", lambda s: s["x"] > 0.4 and s["y"] > 0.4, what="the point up right")
    assert_point_seen_in(driver, "radio1", "AP")

    publish(client, prefix, moods_line(30, "radio1", 10, "PN"))
    s = until(driver, "radio1", lambda s: s["seq"] == 39 and s["x"] < -0.4 and s["y"] < -0.4,
              what="the point down left")
    assert (s["badge"], s["words"], s["top"]) == ("PN", "sad · gloomy", "PN")
    assert s["trail"] == 40 and s["band"] == ["AP", "PN"]
    assert_point_seen_in(driver, "radio1", "PN")

    publish(client, prefix, moods_line(100, "radio1", 40, "PP"))  # 70 s in all
    s = until(driver, "radio1", lambda s: s["seq"] == 139, what="step 139")
    assert s["trail"] == 121  # the last 60 s of steps (t_end 10.0 ... 70.0)
    assert s["opacities"][0] < 0.2 < 0.7 < s["opacities"][-1]  # the trail fades with age
    assert driver.execute_script("return window.__noReload") == 1
    assert console_errors(driver) == []


def test_history_on_load_segments_new_sources_and_health(env):
    dash, client, prefix, driver = env
    first = moods_line(40, "radio1", 0, "AP", segment_start=0.0)
    second = moods_line(40, "radio1", 40, "PP", segment_start=20.0)
    publish(client, prefix, first + second, live=False)  # only the history: before the page
    client.hset(f"{prefix}:metrics:radio1", mapping={"audio_overflows": 0, "moods_dropped": 0})
    open_page(driver, dash.url)
    s = until(driver, "radio1", lambda s: s["messages"] == 80, what="the history of radio1")
    assert s["segments"] == [20.0] and s["band"] == ["AP", "PP"] and s["quadrant"] == "PP"
    assert s["health"] == "ok" and s["healthText"] == "OK, nothing dropped"

    publish(client, prefix, moods_line(10, "radio1", 80, "AN", segment_start=40.0))
    s = until(driver, "radio1", lambda s: s["seq"] == 89, what="live steps after the history")
    assert s["segments"] == [20.0, 40.0] and s["segment"] == "since 5.0 s"

    publish(client, prefix, [mood("radio0", 0, -0.3, 0.8)])
    s = until(driver, "radio0", lambda s: s["seq"] == 0, what="a new source")
    assert s["cards"] == ["radio0", "radio1"] and s["quadrant"] == "AN"

    client.hset(f"{prefix}:metrics:radio1", mapping={"audio_overflows": 3})
    s = until(driver, "radio1", lambda s: s["health"] == "warn", what="the overflow warning")
    assert "3 audio overflows" in s["healthText"]
    assert driver.execute_script("return window.__noReload") == 1
    assert console_errors(driver) == []


def test_the_page_recovers_after_the_server_restarts(redis_namespace, browser):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    port = free_port()
    cmd = [sys.executable, "-m", "streammood", "dashboard", "--port", str(port), "--redis-url",
           url, "--prefix", prefix]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        while "dashboard at" not in (line := proc.stderr.readline()):
            assert line, "the dashboard did not start"
        return proc

    proc = start()
    try:
        open_page(browser, f"http://127.0.0.1:{port}/")
        publish(client, prefix, moods_line(5, "radio1", 0, "AP"))
        until(browser, "radio1", lambda s: s["seq"] == 4, what="the first steps")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: body(browser, "feed") == "reconnecting", 10, 0.05, "reconnecting")
        publish(client, prefix, moods_line(5, "radio1", 5, "PN"))  # while nobody listens
        proc = start()
        wait_for(lambda: body(browser, "feed") == "live", 15, 0.05, "live again")
        s = until(browser, "radio1", lambda s: s["seq"] == 9, what="the missed steps")
        assert s["messages"] == 10 and s["quadrant"] == "PN"  # filled from the history
        publish(client, prefix, moods_line(1, "radio1", 10, "PN"))
        until(browser, "radio1", lambda s: s["seq"] == 10, what="live steps after the restart")
        assert browser.execute_script("return window.__noReload") == 1
    finally:
        proc.terminate()
        proc.wait(10)
        client.close()


def test_the_page_says_redis_is_away_and_recovers(tmp_path, browser):
    server = RedisServer(tmp_path)
    server.start()
    try:
        with run_dashboard(server.url, "p") as dash:
            wait_for(lambda: dash.hub.stats.redis_up, what="the hub's subscription")
            open_page(browser, dash.url)
            publish(server.client(), "p", moods_line(5, "radio1", 0, "AP"))
            until(browser, "radio1", lambda s: s["seq"] == 4, what="the first steps")
            assert body(browser, "redis") == "up"
            server.stop()
            s = until(browser, "radio1", lambda s: s["health"] == "away", what="Redis away")
            assert s["healthText"].startswith("Redis away") and body(browser, "redis") == "away"
            server.start()  # empty: no persistence
            # a publisher's buffered steps, flushed before the hub is back
            publish(server.client(), "p", moods_line(5, "radio1", 5, "PP"), live=False)
            wait_for(lambda: dash.hub.stats.epoch == 2, 10, what="the hub to resubscribe")
            publish(server.client(), "p", moods_line(1, "radio1", 10, "PP"))
            s = until(browser, "radio1", lambda s: s["messages"] == 11 and s["health"] != "away",
                      what="the buffered steps and a live one")
            assert s["seq"] == 10 and body(browser, "redis") == "up"  # what it had, and more
    finally:
        server.stop()


def test_a_gap_in_the_live_steps_is_read_from_the_history(env):
    dash, client, prefix, driver = env
    open_page(driver, dash.url)
    publish(client, prefix, moods_line(3, "radio1", 0, "AP"))
    until(driver, "radio1", lambda s: s["seq"] == 2, what="the first steps")
    publish(client, prefix, moods_line(4, "radio1", 3, "AP"), live=False)  # never seen live
    publish(client, prefix, moods_line(1, "radio1", 7, "AP"))
    until(driver, "radio1", lambda s: s["seq"] == 7 and s["messages"] == 8, what="the gap filled")


def test_the_token_opens_page_and_feed(redis_namespace, browser):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    with run_dashboard(url, prefix, token="t0ken") as dash:
        browser.delete_all_cookies()
        browser.get(dash.url)
        assert "needs its token" in browser.find_element("tag name", "body").text
        open_page(browser, dash.url + "?token=t0ken")
        assert browser.current_url == dash.url  # the token is out of the address bar
        publish(client, prefix, moods_line(3, "radio1", 0, "AN"))
        until(browser, "radio1", lambda s: s["seq"] == 2, what="moods behind the token")
    client.close()
