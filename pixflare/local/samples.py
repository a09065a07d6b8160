"""Sample images made on the fly for the demo and the local-stack tests.

Each exercises a different path of the variant engine: a photo-like JPEG whose
EXIF orientation must be applied, a PNG with an alpha channel, a WebP, and a
small animated GIF.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Sample:
    filename: str
    data: bytes
    description: str


def _gradient(width: int, height: int) -> Image.Image:
    """A smooth sky-to-ground gradient with some detail, so JPEG sizes look like a photo's."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    assert pixels is not None
    for y in range(height):
        for x in range(width):
            wave = int(24 * math.sin(x / 17.0) * math.cos(y / 23.0))
            pixels[x, y] = (
                max(0, min(255, 40 + 180 * y // height + wave)),
                max(0, min(255, 90 + 100 * x // width)),
                max(0, min(255, 200 - 120 * y // height - wave)),
            )
    return image


def photo_jpeg(width: int = 1600, height: int = 1200, orientation: int = 6) -> bytes:
    """A landscape JPEG stored sideways with EXIF orientation ``orientation`` (6: rotate 90)."""
    small = _gradient(width // 4, height // 4).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(small)
    draw.ellipse((width * 0.6, height * 0.1, width * 0.75, height * 0.3), fill=(250, 230, 120))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def alpha_png(size: int = 640) -> bytes:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 8, size // 8, size * 7 // 8, size * 7 // 8), fill=(220, 40, 90, 200))
    draw.rectangle((size // 3, size // 3, size * 2 // 3, size * 2 // 3), fill=(30, 160, 220, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def webp(width: int = 1280, height: int = 720) -> bytes:
    image = _gradient(width // 4, height // 4).resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


def small_gif(size: int = 96, frames: int = 3) -> bytes:
    images = []
    for frame in range(frames):
        image = Image.new("P", (size, size), 0)
        image.putpalette([0, 0, 0, 255, 200, 0, 0, 120, 255] + [0] * (256 * 3 - 9))
        draw = ImageDraw.Draw(image)
        offset = frame * size // (frames * 2)
        draw.rectangle((offset, offset, offset + size // 2, offset + size // 2), fill=1 + frame % 2)
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=120, loop=0)
    return buffer.getvalue()


def demo_samples() -> list[Sample]:
    return [
        Sample("photo.jpg", photo_jpeg(), "photo-like JPEG, EXIF orientation 6"),
        Sample("badge.png", alpha_png(), "PNG with alpha"),
        Sample("banner.webp", webp(), "WebP"),
        Sample("spinner.gif", small_gif(), "small animated GIF"),
    ]
