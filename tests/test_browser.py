"""The web page in headless Chromium (Debian's chromium driven by Playwright).

Skipped when /usr/bin/chromium (``apt-get install chromium``) or the playwright package is
missing; ``.ci/run`` installs both. It serves the tiny test model and screenshots into a
temporary folder; with ``RNNSENT_SERVE_MODEL=runs/seed`` it serves that model instead and
writes the README's ``docs/screenshot.png`` (the committed one was taken that way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from rnnsent.inference.predictor import Predictor
from rnnsent.serve.app import create_app

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
REVIEW = "The cast is wonderful and the first hour is great fun, but the ending is a boring, stupid mess. Zzyzx!"


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page_url(browser, tiny_model_dir, server_factory):
    model = os.environ.get("RNNSENT_SERVE_MODEL") or tiny_model_dir
    return server_factory(create_app(Predictor.load(model)))


def test_page_explains_a_review(browser, page_url, tmp_path):
    page = browser.new_page(viewport={"width": 820, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_url)
    # Keyboard only: focus the box, type, submit with Ctrl+Enter.
    page.focus("#review")
    page.keyboard.type(REVIEW)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)

    expected = httpx.post(f"{page_url}/explain", json={"text": REVIEW}).json()
    assert page.inner_text("#label").strip().lower() == expected["label"]
    assert page.inner_text("#probability") == f"{100 * expected['probability']:.1f}% positive"

    words = [index for index, special in enumerate(expected["special"]) if not special]
    spans = page.locator("#words .word")
    assert spans.count() == len(words)
    assert spans.all_inner_texts() == [expected["tokens"][index] for index in words]
    # The word that pushed hardest is coloured green if it pushed up, red if down.
    strongest = max(words, key=lambda index: abs(expected["influence"][index]))
    colour = page.eval_on_selector(f'#words .word[data-index="{strongest}"]',
                                   "node => getComputedStyle(node).backgroundColor")
    red, green = [int(float(part)) for part in colour[colour.index("(") + 1:].split(",")[:2]]
    assert (green > red) == (expected["influence"][strongest] > 0), colour
    coloured = page.eval_on_selector_all(
        "#words .word", "nodes => nodes.filter(n => getComputedStyle(n).backgroundColor !== 'rgba(0, 0, 0, 0)').length")
    assert coloured >= 1

    # The chart: one point per token, the line through all of them, higher probability drawn higher.
    assert page.locator("#chart circle.point").count() == len(expected["tokens"])
    points = page.get_attribute("#chart polyline.line", "points").split()
    assert len(points) == len(expected["tokens"])
    heights = [float(point.split(",")[1]) for point in points]
    trajectory = expected["trajectory"]
    highest, lowest = trajectory.index(max(trajectory)), trajectory.index(min(trajectory))
    assert heights[highest] <= heights[lowest]

    # Arrow keys step through the words and report their numbers.
    page.focus("#words")
    page.keyboard.press("ArrowRight")
    assert expected["tokens"][words[0]] in page.inner_text("#readout")
    page.keyboard.press("End")
    assert expected["tokens"][words[-1]] in page.inner_text("#readout")
    assert not errors, errors

    screenshot = SCREENSHOT if os.environ.get("RNNSENT_SERVE_MODEL") else tmp_path / "screenshot.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    shrink_png(screenshot)
    assert screenshot.stat().st_size > 10_000
    page.close()


def shrink_png(path: Path) -> None:
    """Re-save with a 128-colour palette: the page has few colours, and the file is committed."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE)
    small.save(path, optimize=True)


def test_page_fits_a_narrow_screen_and_reports_errors(browser, page_url):
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.goto(page_url)
    page.click("button.example >> nth=0")  # an example review is analysed at once
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    # An empty box is refused in the page; an oversize review shows the server's message.
    page.fill("#review", "")
    page.click("#submit")
    assert "Type a review first" in page.inner_text("#status")
    page.fill("#review", "a" * 20_001)
    page.click("#submit")
    page.wait_for_function("document.getElementById('status').textContent.includes('limit')", timeout=15_000)
    assert "20000" in page.inner_text("#status")
    page.close()
