"""Open the HTML report in real headless Chromium and read what a person would see."""

import json
import os
import shutil
from pathlib import Path

import pytest

from trustfm.config import load_config
from trustfm.pipeline import train_and_evaluate
from trustfm.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_paths(tiny_model_dir, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    config = load_config(None, {
        "data.train": str(tiny_data), "data.max_length": 32, "model.name_or_path": str(tiny_model_dir),
        "train.epochs": 2, "train.learning_rate": 3e-3, "train.batch_size": 16,
        "evaluate.bootstrap_samples": 200, "output_dir": str(out),
    })
    train_and_evaluate(config, show_progress=False)
    return build_report(out)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")
def test_headline_numbers_are_visible_in_chromium(report_paths):
    from playwright.sync_api import sync_playwright

    html_path, json_path = report_paths
    numbers = json.loads(Path(json_path).read_text())["results"]["performance"]
    accuracy = f"{numbers['accuracy']['value']:.4f}"
    macro_f1 = f"{numbers['macro_f1']['value']:.4f}"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(Path(html_path).resolve().as_uri())
        card = page.locator("#headline-accuracy")
        assert card.is_visible()
        assert accuracy in card.inner_text()
        assert macro_f1 in page.locator("#headline-macro-f1").inner_text()
        low = f"{numbers['accuracy']['low']:.4f}"
        assert low in card.inner_text()  # the interval is shown, not only the point
        # figures render as inline SVG with real size
        figures = page.locator("figure svg")
        assert figures.count() >= 2
        box = figures.first.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100
        assert "model.safetensors" in page.locator("#provenance").inner_text()
        # opened offline: the page asked for nothing but itself
        assert [u for u in requests if not u.startswith("file://")] == []
        shot = os.environ.get("TRUSTFM_REPORT_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)
        browser.close()
