"""The variant engine: eight web renditions of one uploaded image.

Pure: no AWS, no network, no global settings changed. Pillow does the work
(pillow-heif adds HEIC/HEIF when it is installed).

    render_variants(data) -> {"w128": Rendition, ..., "og-image": Rendition}

Geometry
    w128 .. w2048  scale down to that width, never up; height =
                   max(1, round(H * w / W)). A narrower image keeps its size.
    thumb          128 x 128, cover, centred.
    og-image       1200 x 630, cover, centred, always JPEG (alpha flattened
                   onto white). Cover variants are filled even from a smaller
                   image, so they are the only ones that may be enlarged.

Colour and metadata
    EXIF orientation is applied (1-8; any other value is ignored). An
    embedded ICC profile is converted to sRGB with ImageCms (a corrupt or
    unusable profile is ignored, the pixels are then taken as sRGB). CMYK,
    including Adobe's inverted CMYK JPEGs, becomes RGB. Outputs carry no
    metadata at all: no EXIF, GPS, XMP, comments, DPI, and no ICC profile
    (every output is sRGB, and an untagged image is read as sRGB by browsers,
    so a profile would only cost bytes).

Formats
    JPEG in -> JPEG out; PNG and WebP keep their format and alpha; GIF and
    animated WebP give their first frame (GIF is written as PNG); HEIC/HEIF
    and AVIF are written as JPEG, or PNG when they use transparency.
    Greyscale stays greyscale; 16-bit, palette, 1-bit and LA inputs are
    brought to 8-bit L/LA/RGB/RGBA without losing alpha.

Hostile input
    Anything that cannot be rendered raises ImageRejected (and nothing
    else): empty, truncated, corrupt or non-image bytes, unsupported formats,
    a zero dimension, an extreme aspect ratio, or more than max_pixels pixels.
    The pixel limit is checked from the header, before any pixel is decoded,
    against our own limit (Pillow's global MAX_IMAGE_PIXELS is not relied on;
    its DecompressionBombError is translated too).

Speed
    One decode serves every variant. JPEG is decoded with DCT scaling
    (draft) to the smallest scale that still covers the largest variant and
    the cover crops. Each variant is then resized from the smallest
    already-available source that is at least as large as it: a reduce()
    pyramid (cheap box halving) or a larger variant already made. The final
    filtered resize works on that source with box= (cover crops are taken
    before resizing). Colour conversion, rotation and encoding of each
    variant run on a small thread pool (Pillow releases the GIL).
    Encoders: JPEG baseline, 4:2:0, no optimize pass; PNG with the Sub
    filter on every row, zlib level 1 with the run-length strategy, large
    images deflated in pieces on the pool (our own minimal writer, see
    _png: about three times faster than Pillow's adaptive filtering, and
    smaller files on photos); WebP method 2 (of 0-6).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from lambdas.variant.png import PNG_COLOUR_TYPES, PNG_COMPRESS_LEVEL, encode_png, run_all

try:  # HEIC/HEIF support is optional: without it such uploads are rejected.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED: Final[bool] = True
except ImportError:  # pragma: no cover - depends on the installed packages
    HEIF_SUPPORTED = False  # type: ignore[misc]

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_THREADS",
    "MAX_ASPECT_RATIO",
    "QUALITY",
    "VARIANTS",
    "VARIANT_NAMES",
    "ImageRejected",
    "Rendition",
    "VariantSpec",
    "downscale_jpeg",
    "render_variants",
]

DEFAULT_MAX_PIXELS: Final = 100_000_000
"""Largest accepted image, in pixels, judged from the header before decoding."""

MAX_ASPECT_RATIO: Final = 100
"""Longest side / shortest side beyond which an image is rejected (1 x 60000 is)."""

MAX_SIDE: Final = 65_000
"""Longest accepted side: JPEG cannot store more than 65535."""

DEFAULT_THREADS: Final = 2
QUALITY: Final = 85
WEBP_METHOD: Final = 2

Resample = Image.Resampling
# How each variant is resized. The pyramid (box halving with reduce()) and
# the larger variants already made are candidate sources; a variant is made
# from the smallest one that is at least ``ratio`` times its size, by one
# filtered resize. Large variants carry the cost and JPEG's own loss at
# their size hides small filter differences, so they take a cheaper filter
# straight from the nearest source: the largest (2 MP and up: w2048, a
# portrait w1536) BOX, area averaging, about 30% faster than BILINEAR;
# the middle ones BILINEAR, because they are often made from a large
# variant and two area-averaging steps in a row cost up to 0.4 dB (BOX
# there measured 0.44 dB below the q85 reference on webp8 og-image,
# BILINEAR 0.13). Small variants are cheap, and there a coarser pyramid
# step would show, so they keep a wider gap and LANCZOS. bench/variants.py
# measures these choices against a full-resolution LANCZOS reference.
_HUGE_PIXELS: Final = 2_000_000
_LARGE_PIXELS: Final = 400_000
_HUGE_STEP: Final = (1.0, Resample.BOX)
_LARGE_STEP: Final = (1.0, Resample.BILINEAR)
_SMALL_STEP: Final = (2.0, Resample.LANCZOS)


def _step(size: tuple[int, int]) -> tuple[float, Resample]:
    pixels = size[0] * size[1]
    if pixels >= _HUGE_PIXELS:
        return _HUGE_STEP
    return _LARGE_STEP if pixels >= _LARGE_PIXELS else _SMALL_STEP


Image.init()  # register every plugin now, so formats= below finds them
_ALLOWED_FORMATS: Final = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "AVIF", "HEIF") if f in Image.OPEN
)
_ORIENTATION_TAG: Final = 0x0112


class ImageRejected(Exception):  # noqa: N818 - the name is a contract
    """The input cannot be rendered; retrying will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


OutputFormat = Literal["JPEG", "PNG", "WEBP"]

_CONTENT_TYPES: Final[dict[str, str]] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
}
_EXTENSIONS: Final[dict[str, str]] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True, slots=True)
class Rendition:
    """One encoded variant."""

    data: bytes
    width: int
    height: int
    content_type: str
    format: str
    extension: str


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """A variant: ``width`` only (scale down to that width, never up), or a
    ``cover`` box filled and centre-cropped (``force_jpeg`` for og-image)."""

    name: str
    width: int
    height: int | None = None
    force_jpeg: bool = False

    @property
    def cover(self) -> bool:
        return self.height is not None


VARIANTS: Final[tuple[VariantSpec, ...]] = (
    VariantSpec("w128", 128),
    VariantSpec("w256", 256),
    VariantSpec("w512", 512),
    VariantSpec("w1024", 1024),
    VariantSpec("w1536", 1536),
    VariantSpec("w2048", 2048),
    VariantSpec("thumb", 128, 128),
    VariantSpec("og-image", 1200, 630, force_jpeg=True),
)
VARIANT_NAMES: Final[tuple[str, ...]] = tuple(v.name for v in VARIANTS)


# --------------------------------------------------------------------------
# Geometry, in the upright (oriented) frame.


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where a variant comes from: ``box`` of the upright full-resolution
    image (floats) scaled to ``size``."""

    spec: VariantSpec
    size: tuple[int, int]
    box: tuple[float, float, float, float]


def _plan(spec: VariantSpec, width: int, height: int) -> _Plan:
    if spec.height is None:
        w = min(spec.width, width)
        h = max(1, round(height * w / width))
        return _Plan(spec, (w, h), (0.0, 0.0, float(width), float(height)))
    tw, th = spec.width, spec.height
    scale = max(tw / width, th / height)
    cw, ch = min(width, tw / scale), min(height, th / scale)
    x0, y0 = (width - cw) / 2, (height - ch) / 2
    return _Plan(spec, (tw, th), (x0, y0, x0 + cw, y0 + ch))


# Orientation: the transpose taking the stored image upright.
_TRANSPOSE: Final[dict[int, Image.Transpose | None]] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _to_stored_box(
    box: tuple[float, float, float, float], orientation: int
) -> tuple[float, float, float, float]:
    """Map a box of the upright image onto the stored image.

    Every box the variants use is centred (the whole frame, or a centred
    cover crop), and a centred box stays centred under any flip, so only the
    swap of axes of orientations 5-8 changes it.
    """
    x0, y0, x1, y1 = box
    if orientation in (5, 6, 7, 8):
        return (y0, x0, y1, x1)
    return box


# --------------------------------------------------------------------------
# Opening and decoding, safely.


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageRejected("not bytes")
    if len(data) == 0:
        raise ImageRejected("empty file")
    try:
        im = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected(
            "not a supported image (JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF)"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's plugins raise many types on bad headers
        raise ImageRejected(f"corrupt image header: {type(exc).__name__}: {exc}") from None
    if im.format not in _ALLOWED_FORMATS:  # pragma: no cover - formats= already limits
        raise ImageRejected(f"unsupported format {im.format}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"image has a zero dimension ({width}x{height})")
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    if max(width, height) > MAX_SIDE:
        raise ImageRejected(f"image side {max(width, height)} is over the limit of {MAX_SIDE}")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRejected(f"aspect ratio of {width}x{height} is beyond {MAX_ASPECT_RATIO}:1")
    return im


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block: treat as upright
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _load(im: ImageFile.ImageFile) -> None:
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageRejected(f"cannot decode image: {type(exc).__name__}: {exc}") from None


_WORKING_MODES: Final = ("L", "LA", "RGB", "RGBA", "CMYK")


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any decoded mode to one of L, LA, RGB, RGBA, CMYK (8 bits)."""
    mode = im.mode
    if mode in _WORKING_MODES:
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" or im.has_transparency_data else "RGB")
    if mode.startswith("I;16") or mode == "I":
        # Pillow's direct I;16 -> L conversion clips; scale 16 bits to 8.
        scaled = im.convert("I").point(lambda v: v / 257)
        return scaled.convert("L")
    if mode == "F":
        return im.convert("L")
    if mode == "La":
        return im.convert("LA")
    if mode == "RGBa":
        return im.convert("RGBA")
    return im.convert("RGB")


# --------------------------------------------------------------------------
# Colour management.

_SRGB: Final = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=32)
def _transform_for(
    digest: str, profile: bytes, mode: str, out_mode: str
) -> ImageCms.ImageCmsTransform | None:
    """A transform from ``profile`` to sRGB, or None when the profile is sRGB
    already, unusable, or of the wrong colour space for ``mode``."""
    del digest  # part of the cache key only
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        space = src.profile.xcolor_space.strip()
        expected = {"RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK"}.get(mode)
        if space != expected:
            return None
        if space == "RGB" and "srgb" in (src.profile.profile_description or "").lower():
            return None
        intent = (
            ImageCms.Intent.PERCEPTUAL if space == "CMYK" else ImageCms.Intent.RELATIVE_COLORIMETRIC
        )
        return ImageCms.buildTransform(src, _SRGB, mode, out_mode, renderingIntent=intent)
    except Exception:  # corrupt or unsupported profile: ignore it
        return None


def _colour_step(im: Image.Image) -> Callable[[Image.Image], Image.Image] | None:
    """What turns a (resized) image of this source into sRGB, or None."""
    mode = im.mode
    profile = im.info.get("icc_profile")
    transform = None
    if isinstance(profile, bytes) and profile and mode in ("RGB", "RGBA", "CMYK"):
        out_mode = "RGB" if mode == "CMYK" else mode
        digest = hashlib.sha1(profile, usedforsecurity=False).hexdigest()
        transform = _transform_for(digest, profile, mode, out_mode)
    if transform is not None:
        t = transform
        return lambda img: ImageCms.applyTransform(img, t) or img
    if mode == "CMYK":
        return lambda img: img.convert("RGB")
    return None


# --------------------------------------------------------------------------
# Encoding.


def _flatten(im: Image.Image) -> Image.Image:
    """Alpha onto white, for JPEG."""
    if im.mode == "RGBA":
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(im, mask=im.getchannel("A"))
        return out
    if im.mode == "LA":
        out = Image.new("L", im.size, 255)
        out.paste(im, mask=im.getchannel("A"))
        return out
    return im


def _encode(
    im: Image.Image,
    fmt: OutputFormat,
    pool: ThreadPoolExecutor | None = None,
    parts: int = 1,
) -> bytes:
    if im.info:  # nothing from the source travels into the output
        im = im.copy()
        im.info = {}
    buf = io.BytesIO()
    if fmt == "JPEG":
        im = _flatten(im)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        im.save(buf, "JPEG", quality=QUALITY, subsampling=2, optimize=False)
    elif fmt == "PNG":
        if im.mode in PNG_COLOUR_TYPES:
            return encode_png(im, pool, parts)
        im.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        if im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.mode else "RGB")
        im.save(buf, "WEBP", quality=QUALITY, method=WEBP_METHOD)
    return buf.getvalue()


def _output_format(source_format: str, has_alpha: bool) -> OutputFormat:
    if source_format in ("JPEG", "MPO"):
        return "JPEG"
    if source_format == "WEBP":
        return "WEBP"
    if source_format in ("PNG", "GIF"):
        return "PNG"
    # HEIF / AVIF
    return "PNG" if has_alpha else "JPEG"


def _uses_alpha(im: Image.Image) -> bool:
    if im.mode not in ("RGBA", "LA"):
        return False
    lo = im.getchannel("A").getextrema()[0]
    return isinstance(lo, int | float) and lo < 255


# --------------------------------------------------------------------------
# The render.


@dataclass(slots=True)
class _Source:
    image: Image.Image
    # Size of the stored image this source represents (it is a scaled copy
    # of the whole stored frame).
    full: tuple[int, int]

    def scale(self) -> tuple[float, float]:
        return self.image.width / self.full[0], self.image.height / self.full[1]


class _Sources:
    """Full-frame images of the stored picture at decreasing sizes: the
    decoded base, its reduce(2) pyramid, and variants already made."""

    def __init__(self, base: Image.Image, full: tuple[int, int]) -> None:
        self.full = full
        self.items: list[_Source] = [_Source(base, full)]
        self._pyramid_tip = self.items[0]

    def add(self, image: Image.Image) -> None:
        self.items.append(_Source(image, self.full))

    def _grow_pyramid(self, need_w: float, need_h: float) -> None:
        tip = self._pyramid_tip.image
        while tip.width >= 2 * need_w and tip.height >= 2 * need_h and min(tip.size) >= 2:
            tip = tip.reduce(2)
            self._pyramid_tip = _Source(tip, self.full)
            self.items.append(self._pyramid_tip)

    def best(
        self, box: tuple[float, float, float, float], size: tuple[int, int], ratio: float
    ) -> tuple[Image.Image, tuple[float, float, float, float]]:
        """The smallest source whose copy of ``box`` is still at least
        ``ratio`` times ``size``, with the box in its coordinates (the decoded
        base when none is)."""
        bw, bh = box[2] - box[0], box[3] - box[1]
        fw, fh = self.full
        # The pyramid is grown until its tip would be too small for this box.
        self._grow_pyramid(size[0] * ratio * fw / bw, size[1] * ratio * fh / bh)
        best: _Source | None = None
        for src in self.items:
            sx, sy = src.scale()
            # 1% slack: a variant rounded a pixel short still serves.
            if bw * sx < size[0] * ratio * 0.99 and src is not self.items[0]:
                continue
            if bh * sy < size[1] * ratio * 0.99 and src is not self.items[0]:
                continue
            if (
                best is None
                or src.image.width * src.image.height < best.image.width * best.image.height
            ):
                best = src
        assert best is not None
        sx, sy = best.scale()
        return best.image, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


_STRIP_MIN_PIXELS: Final = 200_000


def _resize(
    src: Image.Image,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    resample: Resample,
    pool: ThreadPoolExecutor | None = None,
    parts: int = 1,
) -> Image.Image:
    """``box`` of ``src`` resized to ``size``; with a pool, large outputs are
    made as horizontal strips in parallel (each strip's filter still reads
    the source rows around it, so the seams are invisible)."""
    if src.size == size and box == (0.0, 0.0, float(src.width), float(src.height)):
        return src
    width, height = size
    parts = min(parts, height)
    if pool is None or parts < 2 or width * height < _STRIP_MIN_PIXELS:
        return src.resize(size, resample, box=box)
    x0, y0, x1, y1 = box
    step = (y1 - y0) / height
    cuts = [round(i * height / parts) for i in range(parts + 1)]

    def strip(r0: int, r1: int) -> Callable[[], Image.Image]:
        return lambda: src.resize(
            (width, r1 - r0), resample, box=(x0, y0 + r0 * step, x1, y0 + r1 * step)
        )

    strips = run_all(pool, [strip(r0, r1) for r0, r1 in itertools.pairwise(cuts)])
    out = Image.new(src.mode, size)
    for r0, part in zip(cuts, strips, strict=False):
        out.paste(part, (0, r0))
    return out


def render_variants(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = DEFAULT_THREADS,
) -> dict[str, Rendition]:
    """Render the eight variants of ``data``; see the module docstring.

    Raises ImageRejected for any input that cannot be rendered.
    ``threads`` bounds the encoding pool (1 = everything on the caller's
    thread).
    """
    return _render(data, VARIANTS, max_pixels=max_pixels, threads=threads)


def downscale_jpeg(data: bytes, width: int = 384, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A small upright sRGB JPEG (``width`` wide at most) for image labelling."""
    if width < 1:
        raise ValueError("width must be at least 1")
    spec = VariantSpec(f"w{width}", width, force_jpeg=True)
    return _render(data, (spec,), max_pixels=max_pixels, threads=1)[spec.name].data


def _render(
    data: bytes,
    specs: tuple[VariantSpec, ...],
    *,
    max_pixels: int,
    threads: int,
) -> dict[str, Rendition]:
    im = _open(data, max_pixels)
    source_format = im.format or ""
    is_jpeg = source_format in ("JPEG", "MPO")
    if not is_jpeg:
        # Other formats may keep EXIF after the pixels (PNG's eXIf chunk),
        # and reading it would decode them outside _load's error handling.
        _load(im)
    orientation = _orientation(im)
    stored_w, stored_h = im.size
    swap = orientation in (5, 6, 7, 8)
    up_w, up_h = (stored_h, stored_w) if swap else (stored_w, stored_h)
    plans = [_plan(s, up_w, up_h) for s in specs]

    # The stored-frame resolution every variant can be made from.
    need = 0.0
    for p in plans:
        bw, bh = p.box[2] - p.box[0], p.box[3] - p.box[1]
        need = max(need, p.size[0] / bw, p.size[1] / bh)
    need = min(need, 1.0)
    if is_jpeg:
        # DCT scaling: the decoder delivers the smallest 1/2, 1/4 or 1/8
        # scale that is still at least the size asked for.
        im.draft(
            im.mode if im.mode in ("L", "RGB", "CMYK") else None,
            (max(1, math.ceil(stored_w * need)), max(1, math.ceil(stored_h * need))),
        )
        _load(im)
    icc = im.info.get("icc_profile")
    base = _normalise_mode(im)
    if icc and "icc_profile" not in base.info:
        base.info["icc_profile"] = icc
    colour = _colour_step(base)
    has_alpha = _uses_alpha(base)
    if not has_alpha and base.mode in ("RGBA", "LA"):
        base = base.convert(base.mode[:-1])
    out_format = _output_format(source_format, has_alpha)
    straight = base.mode
    if has_alpha:
        # Premultiply once: resize() and reduce() would otherwise convert the
        # whole source to premultiplied form on every call.
        base = base.convert("RGBa" if straight == "RGBA" else "La")
    base.info = {}  # metadata never travels: every derived image starts empty
    del im  # the decoded frame, when base is a converted copy of it
    transpose = _TRANSPOSE[orientation]

    sources = _Sources(base, (stored_w, stored_h))
    # Largest first, so smaller variants can be made from larger ones.
    order = sorted(plans, key=lambda p: p.size[0] * p.size[1], reverse=True)

    def finish(img: Image.Image, fmt: OutputFormat) -> Rendition:
        if img.mode in ("RGBa", "La"):
            img = img.convert(straight)
        if colour is not None:
            img = colour(img)
        if transpose is not None:
            img = img.transpose(transpose)
        encoded = _encode(img, fmt, pool, threads)
        return Rendition(
            data=encoded,
            width=img.width,
            height=img.height,
            content_type=_CONTENT_TYPES[fmt],
            format=fmt,
            extension=_EXTENSIONS[fmt],
        )

    results: dict[str, Rendition] = {}
    pending: dict[str, Future[Rendition]] = {}
    first_with: dict[tuple[object, ...], str] = {}
    alias_of: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for p in order:
            stored_box = _to_stored_box(p.box, orientation)
            size = (p.size[1], p.size[0]) if swap else p.size
            fmt: OutputFormat = "JPEG" if p.spec.force_jpeg else out_format
            key = (size, tuple(round(v, 3) for v in stored_box), fmt)
            if key in first_with:  # same pixels, same format: encode once
                alias_of[p.spec.name] = first_with[key]
                continue
            first_with[key] = p.spec.name
            ratio, resample = _step(size)
            src, box = sources.best(stored_box, size, ratio)
            img = _resize(src, box, size, resample, pool, threads)
            if not p.spec.cover and img is not src:
                sources.add(img)
            if pool is None:
                results[p.spec.name] = finish(img, fmt)
            else:
                pending[p.spec.name] = pool.submit(finish, img, fmt)
        for name, fut in pending.items():
            results[name] = fut.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    for name, other in alias_of.items():
        results[name] = results[other]
    return {s.name: results[s.name] for s in specs}
