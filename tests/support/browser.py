"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver.

No browser is ever downloaded: Selenium Manager is bypassed by naming both binaries.
`make test` installs them (packages chromium and chromium-driver) when either is missing;
without them :func:`chromium` fails with that hint rather than skip, so a machine that
lacks them never passes the browser test by leaving it out.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = (
    "{path} is missing: the browser test drives Debian's Chromium through its chromedriver. "
    "`make test` installs both (apt-get install chromium chromium-driver)"
)
# As the machine notes give them: without the background-networking flags Chromium
# keeps dialling Google's hosts, which a closed network refuses, many at a time.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)


def require_browser() -> None:
    """Fail (never skip) with the way to get the browser when it is not installed."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            raise AssertionError(MISSING.format(path=path))


@contextmanager
def chromium(*, window: tuple[int, int] = (1280, 1000)) -> Iterator[Any]:
    """A headless Chromium session with a fresh, empty profile (removed afterwards)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pixflare-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.add_argument(f"--user-data-dir={profile}")
    # The page's console (errors included) is readable through driver.get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """The page's console messages at level SEVERE (script errors among them)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def save_full_page(driver: Any, path: Path) -> None:
    """A PNG of the whole page (beyond the window), at the page's own width."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
