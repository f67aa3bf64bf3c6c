"""The web page in headless Chromium (Debian ``chromium``, driven by Playwright): it loads offline, takes the
API key, moves a persona slider, streams a reply, moves a gauge, and runs side by side. Skips cleanly when
Playwright or Chromium is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from tests.serve.helpers import KEY  # noqa: E402

CHROMIUM = os.environ.get("TRAITLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(os.environ.get("TRAITLAB_SERVE_SCREENSHOT", "/tmp/serve_page.png"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture
def page(server, tmp_path):
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=FLAGS, viewport={"width": 1280,
                                                                                            "height": 800})
        def route(r):  # the page must work offline: only the server itself may be reached
            if r.request.url.startswith(server.url):
                r.continue_()
            else:
                outside.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        context.close()
    assert not outside, f"the page tried to reach {outside}"
    assert not errors, errors


def slider(page, persona: str, pane: str = "A"):
    return page.locator(f'.pane[data-pane="{pane}"] input.persona-slider[data-persona="{persona}"]')


def gauge(page, persona: str, pane: str = "A"):
    return page.locator(f'.pane[data-pane="{pane}"] .gauge[data-persona="{persona}"]')


def reply(page, pane: str = "A", index: int = -1):
    bubbles = page.locator(f'.pane[data-pane="{pane}"] .msg.assistant')
    return bubbles.nth(index if index >= 0 else bubbles.count() - 1)


def send(page, text: str) -> None:
    page.fill("#input", text)
    page.click("#send")
    page.wait_for_function("() => !document.querySelector('.msg.assistant.streaming') && "
                           "document.querySelector('#send') && !document.querySelector('#send').disabled")


def test_page_chat_slider_stream_and_gauge(server, page):
    page.goto(server.url + "/")
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('API key')")
    page.fill("#key", KEY)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("input.persona-slider").count() == 4
    assert page.locator(".gauge").count() == 2  # warmth and bold are persona vectors
    assert gauge(page, "warmth").get_attribute("data-value") == ""

    warmth = slider(page, "warmth")
    warmth.focus()
    for _ in range(15):
        page.keyboard.press("ArrowRight")
    assert float(warmth.input_value()) == pytest.approx(1.5)
    assert "+1.5" in page.locator('.pane[data-pane="A"] .slider .value').first.inner_text()

    page.fill("#max-tokens", "24")
    send(page, "Hello there!")
    bubble = reply(page)
    text = bubble.locator(".text").inner_text()
    assert text and int(bubble.get_attribute("data-chunks")) > 1  # streamed in pieces
    value = gauge(page, "warmth").get_attribute("data-value")
    assert value not in ("", None) and abs(float(value)) > 0  # the gauge moved
    assert "monitor" in bubble.locator(".summary").inner_text()
    # the page asked for exactly what the API gives for this setting
    api = server.chat(messages=[{"role": "user", "content": "Hello there!"}], temperature=0, max_tokens=24,
                      persona={"warmth": 1.5, "bold": 0, "heavy": 0, "cheer": 0}).json()
    assert text == api["choices"][0]["message"]["content"].strip() or \
        text.strip() == api["choices"][0]["message"]["content"].strip()

    # side by side: the same prompt under two settings
    page.check("#side-by-side")
    page.wait_for_selector('.pane[data-pane="B"]')
    b = slider(page, "warmth", "B")
    assert float(b.input_value()) == pytest.approx(1.5)  # B starts from A's setting
    b.focus()
    for _ in range(35):
        page.keyboard.press("ArrowLeft")
    assert float(b.input_value()) == pytest.approx(-2.0)
    send(page, "What do you do on weekends?")
    assert page.locator('.pane[data-pane="A"] .msg.user').count() == 1  # a fresh comparison
    a_text = reply(page, "A").locator(".text").inner_text()
    b_text = reply(page, "B").locator(".text").inner_text()
    assert a_text and b_text and a_text != b_text
    assert gauge(page, "warmth", "B").get_attribute("data-value") not in ("", None)
    page.screenshot(path=str(SCREENSHOT))
