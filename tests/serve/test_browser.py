"""The web page and the API's documentation in headless Chromium (Debian's chromium driven by Playwright).

Skipped when /usr/bin/chromium (``apt-get install chromium``) or the playwright package is
missing; ``.ci/run`` installs both. It serves the tiny test model and screenshots into a
temporary folder; with ``RNNSENT_SERVE_MODEL=runs/seed`` it serves that model instead and
writes the README's ``docs/screenshot.png`` (the committed one was taken that way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from label_models import train_label_model
from rnnsent.inference.predictor import Predictor
from rnnsent.serve.app import ServeLimits, create_app

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
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
    limit = ServeLimits().max_explain_chars
    page.fill("#review", "a" * (limit + 1))
    page.click("#submit")
    page.wait_for_function("document.getElementById('status').textContent.includes('limit')", timeout=15_000)
    assert f"text has {limit + 1} characters; the limit is {limit} for /explain" in page.inner_text("#status")
    page.close()


# ----------------------------------------------------------------------------- models of K classes

TOPIC_TEXT = "the senate passed the law after the vote, and the team scored a goal"
IMDB_WORDS = ("review", "movie", "film", "positive", "negative")


@pytest.fixture(scope="module")
def topics_url(browser, tmp_path_factory):
    from conftest import start_server

    model = train_label_model("topics", tmp_path_factory.mktemp("browser-topics"))
    url, stop = start_server(create_app(Predictor.load(model)))
    yield url
    stop()


def bars(page) -> list[tuple[str, str]]:
    return [(row.locator(".class-name").inner_text(), row.locator(".class-probability").inner_text())
            for row in page.locator("#classes .class-row").all()]


def test_page_shows_every_class_of_a_multiclass_model(browser, topics_url, tmp_path):
    info = httpx.get(f"{topics_url}/model").json()
    page = browser.new_page(viewport={"width": 820, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(topics_url)
    page.wait_for_function(f"document.title === {info['page']['title']!r}", timeout=15_000)
    assert page.get_attribute("#review", "placeholder") == info["page"]["placeholder"]
    # Keyboard only: focus the box, type, submit with Ctrl+Enter.
    page.focus("#review")
    page.keyboard.type(TOPIC_TEXT)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)

    expected = httpx.post(f"{topics_url}/explain", json={"text": TOPIC_TEXT}).json()
    names = info["labels"]
    assert bars(page) == [(name, f"{100 * expected['probabilities'][name]:.1f}%") for name in names]
    widths = page.eval_on_selector_all("#classes .bar-fill", "nodes => nodes.map(n => n.style.width)")
    assert widths == [f"{100 * expected['probabilities'][name]:.1f}%" for name in names]
    assert page.inner_text("#label").strip() == expected["label"]
    assert page.inner_text("#probability") == f"{100 * expected['probabilities'][expected['label']]:.1f}% {expected['label']}"
    assert page.is_hidden("#meter")
    assert page.locator("#classes .class-row.chosen").inner_text().startswith(expected["label"])
    assert page.inner_text("#chart-heading") == f"Probability of “{expected['target']}” after each word"
    assert page.locator("#chart circle.point").count() == len(expected["tokens"])
    # The class chooser lists the model's labels; the arrow keys pick another, which is explained.
    options = page.eval_on_selector_all("#target option", "nodes => nodes.map(n => n.value)")
    assert options == names and page.input_value("#target") == expected["target"]
    other = names[(names.index(expected["target"]) + 1) % len(names)]
    page.focus("#target")
    page.keyboard.press("ArrowDown" if names.index(other) > names.index(expected["target"]) else "Home")
    page.wait_for_function(f"document.getElementById('chart-heading').textContent.includes({other!r})", timeout=15_000)
    chosen = httpx.post(f"{topics_url}/explain", json={"text": TOPIC_TEXT, "class": other}).json()
    points = page.get_attribute("#chart polyline.line", "points").split()
    heights = [float(point.split(",")[1]) for point in points]
    trajectory = chosen["trajectory"]
    assert len(points) == len(trajectory)
    assert heights[trajectory.index(max(trajectory))] <= heights[trajectory.index(min(trajectory))]
    assert page.locator("#classes .class-row.target .class-name").inner_text() == other
    assert f"“{other}”" in page.inner_text("#words-help")
    page.focus("#words")
    page.keyboard.press("End")
    assert f"% {other} after it" in page.inner_text("#readout")
    # Nothing about movie reviews or sentiment anywhere on the page.
    seen = " ".join([page.title(), page.inner_text("body"), page.get_attribute("#review", "placeholder")]).lower()
    assert not [word for word in IMDB_WORDS if word in seen], seen
    assert not errors, errors
    page.screenshot(path=str(tmp_path / "multiclass.png"), full_page=True)
    if os.environ.get("RNNSENT_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "multiclass.png", Path(os.environ["RNNSENT_SCREENSHOT_DIR"]) / "multiclass.png")
    page.close()

    narrow = browser.new_page(viewport={"width": 360, "height": 740})
    narrow.goto(topics_url)
    narrow.fill("#review", TOPIC_TEXT)
    narrow.click("#submit")
    narrow.wait_for_selector("#result:not([hidden])", timeout=15_000)
    assert narrow.locator("#classes .class-row").count() == len(names)
    assert narrow.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    narrow.fill("#review", "")
    narrow.click("#submit")
    assert "Type a text first" in narrow.inner_text("#status")
    if os.environ.get("RNNSENT_SCREENSHOT_DIR"):
        narrow.screenshot(path=str(Path(os.environ["RNNSENT_SCREENSHOT_DIR"]) / "multiclass-narrow.png"), full_page=True)
    narrow.close()


# ----------------------------------------------------------------------------- API documentation offline


def offline_page(browser):
    """A page whose every request beyond this machine fails, as without internet access: ``(page, refused)``."""
    context = browser.new_context()
    refused: list[str] = []

    def route(request_route):
        host = urlsplit(request_route.request.url).hostname or ""
        if request_route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost", "::1"):
            request_route.continue_()
        else:
            refused.append(request_route.request.url)
            request_route.abort("internetdisconnected")

    context.route("**/*", route)
    return context, context.new_page(), refused


def test_api_docs_work_without_internet(browser, page_url):
    context, page, refused = offline_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{page_url}/docs")
    for path in ("/predict", "/explain", "/model", "/health"):
        page.wait_for_selector(f'.opblock-summary-path[data-path="{path}"]', timeout=20_000)
    page.click('.opblock-summary-path[data-path="/predict"]')
    page.wait_for_selector("text=Try it out", timeout=10_000)
    assert not refused, refused
    assert not errors, errors
    context.close()
