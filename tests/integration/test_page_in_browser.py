"""The upload page in a real browser (Debian's headless Chromium, driven by Selenium)
against the local stack: its HTTP API, presigned POSTs to its S3, the ingest on the
S3 event, the variant function, and the status API polled by the page.

The page is opened at the stack's API URL (served there, same-origin), as a user
would: paste a key, pick files, press Upload. What the page shows is then checked
against what the variant engine must produce (width, height) and what the bucket
holds (bytes), and the browser itself must have decoded each variant at its stated
size. The screenshot it leaves is the README's (docs/images/frontend.png).

No skip: without Chromium the test fails, saying `make test` installs it.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from lambdas.shared.api_keys import ApiKeyRepository
from lambdas.shared.aws import reset_clients
from lambdas.shared.keys import VARIANT_NAMES, ImagePath
from pixflare.local.stack import LocalStack
from tests.support.browser import chromium, console_errors, save_full_page
from tests.support.local_stack import started_stack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "images" / "frontend.png"
OWNER = "browser"
ALBUM = "web"  # the page's default album
SETTLE_SECONDS = 90  # a bound on waiting, not an assertion on speed
# Two pictures whose sizes make every rule visible: the wide one is scaled down to each
# width but w2048 (never upscaled, it stays 1600 wide); the tall one only up to w256.
GOOD = {
    "harbour at dusk.jpg": ("JPEG", (1600, 900)),
    "tall-lighthouse.png": ("PNG", (300, 500)),
}
CORRUPT = "broken.jpg"
COVER = {"thumb": (128, 128), "og-image": (1200, 630)}
SETTLED = ("ready", "failed", "error", "stopped")

# Everything the test reads from the page, in one round trip.
READ_PAGE = """
return Array.from(document.querySelectorAll('#images .image')).map((card) => ({
  file: card.dataset.file,
  filename: card.dataset.filename,
  imageId: card.dataset.imageId || null,
  status: card.dataset.status,
  reason: card.querySelector('.reason').textContent,
  variants: Array.from(card.querySelectorAll('.variant')).map((figure) => {
    const img = figure.querySelector('img');
    return {
      name: figure.dataset.variant,
      width: Number(figure.dataset.width),
      height: Number(figure.dataset.height),
      bytes: Number(figure.dataset.bytes),
      caption: figure.querySelector('figcaption').textContent,
      loaded: img.complete && img.naturalWidth > 0,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
    };
  }),
}));
"""


def expected_size(variant: str, width: int, height: int) -> tuple[int, int]:
    """The engine's geometry: cover boxes are fixed; widths scale down, never up."""
    if variant in COVER:
        return COVER[variant]
    target = int(variant.removeprefix("w"))
    if width <= target:
        return width, height
    return target, max(1, round(height * target / width))


def picture(size: tuple[int, int], hue: int) -> Image.Image:
    """A small landscape: a sky gradient, a sun, hills (something to look at in docs)."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        draw.line(
            [(0, y), (width, y)],
            fill=(int(40 + 200 * t), int(60 + 90 * t * (hue / 255)), int(160 - 100 * t)),
        )
    r = min(width, height) // 6
    draw.ellipse(
        [width // 2 - r, height // 2 - r, width // 2 + r, height // 2 + r], fill=(255, 214, 90)
    )
    for i, shade in enumerate((50, 80, 110)):
        top = height * (60 + 10 * i) // 100
        draw.polygon(
            [
                (0, height),
                (0, top),
                (width // 3, top - height // 12),
                (width, top + height // 10),
                (width, height),
            ],
            fill=(20, shade, 60 + hue // 4),
        )
    return image


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory, "page-stack") as running:
        yield running


@pytest.fixture(scope="module")
def api_key(stack: LocalStack) -> str:
    """A key for OWNER, made as `pixflare keys create` makes one, in the stack's table."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            ("AWS_DEFAULT_REGION", stack.region),
        ):
            patch.setenv(name, os.environ.get(name, value))
        reset_clients()
        try:
            return ApiKeyRepository(stack.outputs["ApiKeysTableName"]).create(OWNER).key
        finally:
            reset_clients()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(window=(1280, 1000)) as driver:
        yield driver


def status_document(stack: LocalStack, key: str, image_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{stack.api_url}/v1/images/{image_id}", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.load(response))


def function_errors(stack: LocalStack, limit: int = 3) -> str:
    """The last ERROR lines the stack's functions logged (for a failure's message)."""
    if stack.log_file is None or not stack.log_file.exists():
        return ""
    lines = [line for line in stack.log_file.read_text().splitlines() if '"ERROR"' in line]
    return "\n".join(line[:1500] for line in lines[-limit:])


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, SETTLE_SECONDS, poll_frequency=0.25).until(condition)
    except TimeoutException:
        shown = json.dumps(driver.execute_script(READ_PAGE), indent=1)[:4000]
        raise AssertionError(f"gave up waiting for {what}; the page shows:\n{shown}") from None


def open_page(driver: Any, stack: LocalStack, key: str) -> None:
    driver.get(f"{stack.api_url}/")
    field = driver.find_element("id", "api-key")
    field.clear()
    field.send_keys(key)


# One test for the module (one stack, one browser, whatever xdist does with the module).
def test_two_images_show_their_eight_variants_a_corrupt_one_its_reason_a_bad_key_plain_words(
    stack: LocalStack, api_key: str, browser: Any, tmp_path: Path
) -> None:
    # Given two real pictures and a file that only looks like a JPEG (its magic bytes
    # pass the ingest's check; decoding fails in the variant step)
    paths = []
    for index, (name, (fmt, size)) in enumerate(GOOD.items()):
        path = tmp_path / name
        picture(size, hue=80 + 120 * index).save(path, fmt)
        paths.append(path)
    corrupt = tmp_path / CORRUPT
    corrupt.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 16)
    paths.append(corrupt)

    # When they are picked on the page, with a pasted key, and uploaded
    open_page(browser, stack, api_key)
    browser.find_element("id", "files").send_keys("\n".join(str(p) for p in paths))
    browser.find_element("id", "upload").click()

    # Then each card settles: the pictures with all eight variants loaded in the browser
    def settled(driver: Any) -> list[dict[str, Any]] | None:
        cards = driver.execute_script(READ_PAGE)
        if len(cards) != len(paths) or any(c["status"] not in SETTLED for c in cards):
            return None
        for card in cards:
            if card["status"] == "ready" and not (
                len(card["variants"]) == len(VARIANT_NAMES)
                and all(v["loaded"] for v in card["variants"])
            ):
                return None
        return list(cards)

    cards = {c["file"]: c for c in wait_for(browser, settled, "all three images to settle")}
    assert set(cards) == {*GOOD, CORRUPT}

    s3 = stack.client("s3")
    bucket = stack.outputs["ImagesBucketName"]
    for name, (_fmt, (width, height)) in GOOD.items():
        card = cards[name]
        assert card["status"] == "ready", f"{card}\n{function_errors(stack)}"
        assert card["reason"] == ""
        assert [v["name"] for v in card["variants"]] == list(VARIANT_NAMES)
        keys = ImagePath(OWNER, ALBUM, card["filename"])
        for variant in card["variants"]:
            want = expected_size(variant["name"], width, height)
            # The page's figures are the engine's geometry ...
            assert (variant["width"], variant["height"]) == want, (name, variant)
            # ... the browser decoded a picture of exactly that size ...
            assert (variant["naturalWidth"], variant["naturalHeight"]) == want, (name, variant)
            # ... and the bytes shown are the stored object's.
            head = s3.head_object(Bucket=bucket, Key=keys.variant_key(variant["name"]))
            assert variant["bytes"] == head["ContentLength"] > 0
            assert f"{want[0]} \N{MULTIPLICATION SIGN} {want[1]}" in variant["caption"]
            assert variant["caption"].endswith(" KB")
    # The name shown is the sanitised one the key was made of.
    assert cards["harbour at dusk.jpg"]["filename"] == "harbour-at-dusk.jpg"

    # And the corrupt file shows the API's reason, and no variant
    broken = cards[CORRUPT]
    assert broken["status"] == "failed", f"{broken}\n{function_errors(stack)}"
    assert broken["variants"] == []
    document = status_document(stack, api_key, broken["imageId"])
    assert document["variants_status"] == "failed"
    assert document["error"] and broken["reason"] == document["error"]

    # The key never reached the address bar; nothing on the page failed
    assert api_key not in browser.current_url
    assert console_errors(browser) == []

    # The README's screenshot: the whole page
    save_full_page(browser, SCREENSHOT)

    # When the page is opened again with a well-formed key that no owner has
    lone = tmp_path / "one.png"
    picture((64, 48), hue=10).save(lone, "PNG")
    open_page(browser, stack, "pfk_" + "A" * 43)
    browser.find_element("id", "files").send_keys(str(lone))
    browser.find_element("id", "upload").click()
    # Then the page says the key was not accepted, on the card and at the top
    refused = wait_for(
        browser,
        lambda d: [c for c in d.execute_script(READ_PAGE) if c["status"] in SETTLED] or None,
        "the upload to be refused",
    )
    assert [c["status"] for c in refused] == ["error"]
    assert "API key was not accepted" in refused[0]["reason"]
    assert "API key was not accepted" in browser.find_element("id", "message").text
