"""The variant engine: geometry, orientation, colour, formats, metadata, hostile input.

Every image is made here with Pillow; nothing is read from disk.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat

from lambdas.variant import engine
from lambdas.variant.engine import (
    VARIANT_NAMES,
    VARIANTS,
    ImageRejected,
    Rendition,
    downscale_jpeg,
    render_variants,
)
from lambdas.variant.png import encode_png

WIDTHS = {"w128": 128, "w256": 256, "w512": 512, "w1024": 1024, "w1536": 1536, "w2048": 2048}
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# --------------------------------------------------------------------------
# helpers


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def opened(r: Rendition) -> Image.Image:
    im = Image.open(io.BytesIO(r.data))
    im.load()
    return im


def quadrants(width: int, height: int) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    im = Image.new("RGB", (width, height))
    hw, hh = width // 2, height // 2
    im.paste(RED, (0, 0, hw, hh))
    im.paste(GREEN, (hw, 0, width, hh))
    im.paste(BLUE, (0, hh, hw, height))
    im.paste(WHITE, (hw, hh, width, height))
    return im


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def corner_colours(im: Image.Image) -> tuple[tuple[int, ...], ...]:
    im = im.convert("RGB")
    w, h = im.size
    pts = [(0.1, 0.1), (0.9, 0.1), (0.1, 0.9), (0.9, 0.9)]
    return tuple(im.getpixel((int(w * x), int(h * y))) for x, y in pts)  # type: ignore[misc]


def assert_upright(im: Image.Image, tol: int = 40) -> None:
    got = corner_colours(im)
    for colour, want in zip(got, (RED, GREEN, BLUE, WHITE), strict=True):
        assert close(colour, want, tol), (got, "expected red/green/blue/white corners")


def expected_width_size(spec_width: int, w: int, h: int) -> tuple[int, int]:
    tw = min(spec_width, w)
    return tw, max(1, round(h * tw / w))


def assert_geometry(out: dict[str, Rendition], w: int, h: int) -> None:
    assert tuple(out) == VARIANT_NAMES
    for name, r in out.items():
        want = (
            expected_width_size(WIDTHS[name], w, h)
            if name in WIDTHS
            else ((128, 128) if name == "thumb" else (1200, 630))
        )
        assert (r.width, r.height) == want, name
        assert opened(r).size == want, name


def max_difference(diff: Image.Image) -> int:
    """The largest value in any band of a multi-band difference image."""
    extrema = diff.getextrema()
    assert isinstance(extrema[0], tuple)
    return max(int(hi) for _, hi in extrema)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def crafted_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, followed by a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------
# the contract


def test_variant_names_and_specs() -> None:
    assert VARIANT_NAMES == (
        "w128",
        "w256",
        "w512",
        "w1024",
        "w1536",
        "w2048",
        "thumb",
        "og-image",
    )
    assert [v.name for v in VARIANTS] == list(VARIANT_NAMES)
    assert engine.QUALITY == 85
    rejected = ImageRejected("because")
    assert rejected.reason == "because"
    assert isinstance(rejected, Exception)


# --------------------------------------------------------------------------
# geometry


@pytest.mark.parametrize(
    ("w", "h"),
    [
        (3000, 2000),  # landscape, every width is a real downscale
        (900, 2700),  # portrait, narrower than w1024: those keep 900 wide
        (100, 60),  # narrower than 128: every width variant keeps the size
        (512, 300),  # exactly one of the widths
        (2048, 1001),  # exactly the widest; heights round
        (1000, 333),  # 333 * 128 / 1000 = 42.6 -> 43
        (1000, 10),  # tall variants of 1-3 px
    ],
)
def test_width_variants_and_covers(w: int, h: int) -> None:
    out = render_variants(encode(quadrants(w, h), "JPEG", quality=92))
    assert_geometry(out, w, h)
    for r in out.values():
        assert r.content_type == "image/jpeg"
        assert r.format == "JPEG"
        assert r.extension == "jpg"


def test_narrow_image_is_not_enlarged_but_re_encoded() -> None:
    src = quadrants(100, 60)
    data = encode(src, "PNG")
    out = render_variants(data)
    for name in WIDTHS:
        assert (out[name].width, out[name].height) == (100, 60)
        assert out[name].data != data
        assert opened(out[name]).convert("RGB").tobytes() == src.tobytes()


def test_height_rule_never_gives_zero() -> None:
    spec = next(v for v in VARIANTS if v.name == "w128")
    plan = engine._plan(spec, 10_000, 20)
    assert plan.size == (128, 1)  # round(0.256) = 0, max(1, 0) = 1
    assert engine._plan(spec, 1000, 333).size == (128, 43)
    assert engine._plan(spec, 64, 33).size == (64, 33)


def test_cover_crops_are_centred() -> None:
    # A wide image with a red band in the centre third: thumb and og-image
    # crop the sides away, so their centre and their left/right edges are
    # red where the band spans the crop.
    im = Image.new("RGB", (900, 300), BLUE)
    im.paste(RED, (300, 0, 600, 300))
    out = render_variants(encode(im, "PNG"))
    thumb = opened(out["thumb"]).convert("RGB")
    assert close(thumb.getpixel((2, 64)), RED, 4)  # type: ignore[arg-type]
    assert close(thumb.getpixel((125, 64)), RED, 4)  # type: ignore[arg-type]
    og = opened(out["og-image"]).convert("RGB")  # crop x 164..736, scaled 2.1x
    assert close(og.getpixel((600, 315)), RED, 12)  # type: ignore[arg-type]
    assert close(og.getpixel((10, 315)), BLUE, 12)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# orientation

# The transpose that, stored with orientation o, reads back upright.
STORED_FROM_UPRIGHT: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_with_orientation(upright: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    op = STORED_FROM_UPRIGHT[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_comes_out_upright(orientation: int, fmt: str) -> None:
    upright = quadrants(400, 260)
    stored, exif = stored_with_orientation(upright, orientation)
    data = encode(stored, fmt, exif=exif)
    # The test's own table agrees with Pillow's reading of the tag.
    assert_upright(ImageOps.exif_transpose(Image.open(io.BytesIO(data))), tol=40)

    out = render_variants(data)
    assert_geometry(out, 400, 260)
    for name in ("w128", "w256", "w2048", "thumb", "og-image"):
        assert_upright(opened(out[name]))
    assert_upright(Image.open(io.BytesIO(downscale_jpeg(data, 200))))


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("fmt", ["WEBP", "AVIF", "HEIF"])
def test_orientation_in_other_containers(orientation: int, fmt: str) -> None:
    if fmt == "HEIF" and not engine.HEIF_SUPPORTED:
        pytest.skip("pillow-heif not installed")
    stored, exif = stored_with_orientation(quadrants(160, 100), orientation)
    out = render_variants(encode(stored, fmt, exif=exif, quality=95))
    assert (out["w128"].width, out["w128"].height) == (128, 80)
    assert_upright(opened(out["w128"]))
    assert_upright(opened(out["thumb"]))


def test_invalid_orientation_is_ignored() -> None:
    exif = Image.Exif()
    exif[0x0112] = 9
    out = render_variants(encode(quadrants(300, 200), "JPEG", exif=exif.tobytes()))
    assert_geometry(out, 300, 200)
    assert_upright(opened(out["w256"]))


# --------------------------------------------------------------------------
# colour


def _s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def matrix_trc_profile(
    colorants: tuple[tuple[float, float, float], ...], gamma: float, name: str
) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile (PCS XYZ, D50)."""

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + b"".join(_s15f16(c) for c in v)

    desc_text = name.encode("ascii") + b"\x00"
    desc = (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(desc_text))
        + desc_text
        + b"\x00" * 12  # no Unicode, no ScriptCode
        + b"\x00" * 67
    )
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256))
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(colorants[0])),
        (b"gXYZ", xyz(colorants[1])),
        (b"bXYZ", xyz(colorants[2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, payload in tags:
        while (offset + len(body)) % 4:
            body += b"\x00"
        table += sig + struct.pack(">II", offset + len(body), len(payload))
        body += payload
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"\x00\x00\x00\x00"  # preferred CMM
        + b"\x02\x10\x00\x00"  # version 2.1
        + b"mntrRGB XYZ "
        + b"\x00" * 12  # date
        + b"acsp"
        + b"\x00" * 24  # platform, flags, manufacturer, model, attributes
        + b"\x00\x00\x00\x00"  # intent: perceptual
        + _s15f16(0.9642)
        + _s15f16(1.0)
        + _s15f16(0.8249)
        + b"\x00" * 4  # creator
        + b"\x00" * 44
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


ADOBE_RGB = matrix_trc_profile(
    (
        (0.60974, 0.31111, 0.01947),
        (0.20528, 0.62567, 0.06087),
        (0.14919, 0.06322, 0.74457),
    ),
    563 / 256,
    "Test Adobe RGB (1998)-like",
)


def adobe_to_srgb(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Reference conversion, straight from the published D65 matrices."""
    lin = [(c / 255) ** (563 / 256) for c in rgb]
    to_xyz = (
        (0.5767309, 0.1855540, 0.1881852),
        (0.2973769, 0.6273491, 0.0752741),
        (0.0270343, 0.0706872, 0.9911085),
    )
    to_srgb = (
        (3.2404542, -1.5371385, -0.4985314),
        (-0.9692660, 1.8760108, 0.0415560),
        (0.0556434, -0.2040259, 1.0572252),
    )
    xyz = [sum(m * c for m, c in zip(row, lin, strict=True)) for row in to_xyz]
    out = []
    for row in to_srgb:
        v = min(1.0, max(0.0, sum(m * c for m, c in zip(row, xyz, strict=True))))
        v = 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
        out.append(round(v * 255))
    return out[0], out[1], out[2]


SATURATED = (40, 170, 60)


def test_adobe_rgb_profile_is_converted_to_srgb() -> None:
    expected = adobe_to_srgb(SATURATED)
    # Converting matters for this colour: ignoring the profile would be far off.
    assert max(abs(a - b) for a, b in zip(expected, SATURATED, strict=True)) > 25
    for fmt, tol in (("PNG", 3), ("JPEG", 5), ("WEBP", 6)):
        data = encode(Image.new("RGB", (64, 48), SATURATED), fmt, icc_profile=ADOBE_RGB)
        out = render_variants(data)
        for name in ("w128", "thumb", "og-image"):
            im = opened(out[name])
            assert "icc_profile" not in im.info
            got = im.convert("RGB").getpixel((20, 20))
            assert close(got, expected, tol), (fmt, name, got, expected)  # type: ignore[arg-type]


def test_srgb_without_profile_or_with_srgb_profile_is_unchanged() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for params in ({}, {"icc_profile": srgb}):
        data = encode(Image.new("RGB", (64, 48), SATURATED), "PNG", **params)
        out = render_variants(data)
        assert opened(out["w128"]).convert("RGB").getpixel((5, 5)) == SATURATED


def test_rgba_with_profile_keeps_alpha() -> None:
    im = Image.new("RGBA", (64, 48), (*SATURATED, 255))
    im.paste((0, 0, 0, 0), (0, 0, 32, 48))
    out = render_variants(encode(im, "PNG", icc_profile=ADOBE_RGB))
    got = opened(out["w128"])
    assert got.mode == "RGBA"
    assert got.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert close(got.getpixel((50, 20))[:3], adobe_to_srgb(SATURATED), 3)  # type: ignore[index]


def test_corrupt_icc_profile_is_ignored() -> None:
    data = encode(Image.new("RGB", (64, 48), SATURATED), "PNG", icc_profile=b"not a profile" * 20)
    out = render_variants(data)
    assert opened(out["w128"]).convert("RGB").getpixel((5, 5)) == SATURATED


def test_cmyk_jpeg_adobe_inverted_becomes_rgb() -> None:
    im = Image.new("CMYK", (80, 60), (0, 255, 255, 0))  # red
    im.paste((255, 0, 255, 0), (40, 0, 80, 60))  # green
    data = encode(im, "JPEG", quality=95)
    assert b"Adobe" in data  # Pillow writes Photoshop-style inverted CMYK
    out = render_variants(data)
    w = opened(out["w128"])
    assert w.mode == "RGB"
    assert close(w.getpixel((10, 30)), RED, 12)  # type: ignore[arg-type]
    assert close(w.getpixel((70, 30)), GREEN, 12)  # type: ignore[arg-type]
    og = opened(out["og-image"])
    assert og.mode == "RGB"


# --------------------------------------------------------------------------
# formats and modes


def transparent_sides(mode: str = "RGBA") -> Image.Image:
    im = Image.new("RGBA", (200, 100), (255, 0, 0, 255))
    im.paste((0, 0, 0, 0), (0, 0, 50, 100))
    return im.convert(mode) if mode != "RGBA" else im


def test_png_with_alpha_keeps_png_and_alpha_og_is_flattened_jpeg() -> None:
    out = render_variants(encode(transparent_sides(), "PNG"))
    for name in (*WIDTHS, "thumb"):
        assert out[name].content_type == "image/png"
        im = opened(out[name])
        assert im.format == "PNG"
        assert im.mode == "RGBA"
    w = opened(out["w128"])
    assert w.getpixel((5, 30))[3] == 0  # type: ignore[index]
    assert w.getpixel((120, 30)) == (255, 0, 0, 255)
    og = opened(out["og-image"])
    assert out["og-image"].content_type == "image/jpeg"
    assert og.format == "JPEG"
    assert og.mode == "RGB"
    # The og-image crop keeps the centre: flattened transparent edge is white.
    cover = Image.new("RGB", (1200, 630))
    cover.paste(og)
    assert close(og.getpixel((5, 300)), WHITE, 6)  # type: ignore[arg-type]
    assert close(og.getpixel((900, 300)), RED, 12)  # type: ignore[arg-type]


def test_png_without_alpha_stays_png_rgb() -> None:
    out = render_variants(encode(quadrants(300, 200), "PNG"))
    im = opened(out["w256"])
    assert (im.format, im.mode) == ("PNG", "RGB")
    assert_upright(im, tol=2)


def test_palette_with_transparency() -> None:
    im = transparent_sides().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    # Make the transparent area a transparent palette index.
    p = Image.new("P", (200, 100), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.paste(0, (0, 0, 50, 100))
    p.info["transparency"] = 0
    del im
    out = render_variants(encode(p, "PNG", transparency=0))
    w = opened(out["w128"])
    assert w.mode == "RGBA"
    assert w.getpixel((3, 30))[3] == 0  # type: ignore[index]
    assert w.getpixel((120, 30)) == (255, 0, 0, 255)


def test_la_keeps_alpha_and_stays_grey() -> None:
    im = Image.new("LA", (200, 100), (180, 255))
    im.paste((0, 0), (0, 0, 50, 100))
    out = render_variants(encode(im, "PNG"))
    w = opened(out["w128"])
    assert w.mode == "LA"
    assert w.getpixel((3, 30)) == (0, 0) or w.getpixel((3, 30))[1] == 0  # type: ignore[index]
    assert w.getpixel((120, 30)) == (180, 255)
    og = opened(out["og-image"])
    assert og.mode == "L"
    assert og.getpixel((5, 300)) >= 250  # type: ignore[operator]


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    row = struct.pack("<H", 32768) * 128 + struct.pack("<H", 65535) * 128
    im = Image.frombytes("I;16", (256, 16), row * 16)
    data = encode(im, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    w = opened(render_variants(data)["w256"])
    assert w.mode == "L"
    assert abs(w.getpixel((20, 8)) - 128) <= 1  # type: ignore[operator]
    assert w.getpixel((200, 8)) == 255


def test_sixteen_bit_rgba_png() -> None:
    # Pillow reads 16-bit RGBA PNGs as 8-bit RGBA; build one by hand.
    w, h = 4, 2
    px = struct.pack(">HHHH", 65535, 0, 0, 65535)  # opaque red
    tp = struct.pack(">HHHH", 0, 0, 0, 0)
    rows = b"".join(b"\x00" + (tp + px * 3 if y == 0 else px * 4) for y in range(h))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )
    out = render_variants(data)
    im = opened(out["w128"])
    assert im.mode == "RGBA"
    assert im.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert im.getpixel((3, 1)) == (255, 0, 0, 255)


def test_greyscale_jpeg_stays_grey() -> None:
    out = render_variants(encode(Image.new("L", (300, 200), 90), "JPEG"))
    for name in VARIANT_NAMES:
        im = opened(out[name])
        assert im.mode == "L", name
        assert abs(im.getpixel((10, 10)) - 90) <= 2  # type: ignore[operator]


def test_one_bit_image() -> None:
    im = Image.new("1", (200, 100), 0)
    im.paste(1, (100, 0, 200, 100))
    out = render_variants(encode(im, "PNG"))
    w = opened(out["w128"])
    assert w.mode == "L"
    assert w.getpixel((5, 30)) == 0
    assert w.getpixel((120, 30)) == 255


def test_webp_with_alpha_stays_webp() -> None:
    out = render_variants(encode(transparent_sides(), "WEBP", quality=90))
    w = opened(out["w128"])
    assert out["w128"].content_type == "image/webp"
    assert w.format == "WEBP"
    assert w.mode == "RGBA"
    assert w.getpixel((3, 30))[3] == 0  # type: ignore[index]
    assert close(w.getpixel((120, 30)), (255, 0, 0, 255), 8)  # type: ignore[arg-type]
    assert out["og-image"].content_type == "image/jpeg"
    assert out["thumb"].content_type == "image/webp"


def frames(fmt: str, **params: object) -> bytes:
    first = Image.new("RGB", (120, 80), RED)
    second = Image.new("RGB", (120, 80), BLUE)
    return encode(first, fmt, save_all=True, append_images=[second], duration=100, **params)


def test_gif_first_frame_as_png() -> None:
    data = frames("GIF")
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = render_variants(data)
    assert out["w128"].content_type == "image/png"
    assert close(opened(out["w128"]).convert("RGB").getpixel((60, 40)), RED, 2)  # type: ignore[arg-type]


def test_animated_webp_first_frame() -> None:
    data = frames("WEBP", lossless=True)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = render_variants(data)
    assert out["w128"].content_type == "image/webp"
    assert close(opened(out["w128"]).convert("RGB").getpixel((60, 40)), RED, 6)  # type: ignore[arg-type]


def test_heif_is_accepted_and_written_as_jpeg() -> None:
    if not engine.HEIF_SUPPORTED:
        pytest.skip("pillow-heif not installed")
    data = encode(quadrants(160, 100), "HEIF", quality=95)
    out = render_variants(data)
    assert_geometry(out, 160, 100)
    assert out["w128"].content_type == "image/jpeg"
    assert_upright(opened(out["w128"]))


def test_heif_with_alpha_is_written_as_png() -> None:
    if not engine.HEIF_SUPPORTED:
        pytest.skip("pillow-heif not installed")
    out = render_variants(encode(transparent_sides(), "HEIF", quality=95))
    assert out["w128"].content_type == "image/png"
    assert opened(out["w128"]).getpixel((3, 30))[3] < 10  # type: ignore[index]
    assert out["og-image"].content_type == "image/jpeg"


def test_avif_is_accepted_and_written_as_jpeg() -> None:
    from PIL import features

    assert features.check("avif")
    data = encode(quadrants(160, 100), "AVIF", quality=95)
    out = render_variants(data)
    assert_geometry(out, 160, 100)
    assert out["w128"].content_type == "image/jpeg"
    assert_upright(opened(out["w128"]))
    alpha = render_variants(encode(transparent_sides(), "AVIF", quality=95))
    assert alpha["w128"].content_type == "image/png"


def test_same_pixels_whatever_the_thread_allowance() -> None:
    # Strips resized in parallel must not show seams: compare with one thread.
    big = Image.linear_gradient("L").resize((3000, 2000)).convert("RGB")
    big.paste(quadrants(1000, 700), (1000, 600))
    data = encode(big, "JPEG", quality=95)
    one = render_variants(data, threads=1)
    three = render_variants(data, threads=3)
    for name in VARIANT_NAMES:
        a, b = opened(one[name]).convert("RGB"), opened(three[name]).convert("RGB")
        assert a.size == b.size
        diff = ImageChops.difference(a, b)
        assert max_difference(diff) <= 16, name
        assert max(ImageStat.Stat(diff).mean) < 0.5, name


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, checking each CRC on the way."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


def noisy_rgba(width: int, height: int) -> Image.Image:
    """Noise (deflate finds little), a flat block (long runs) and graded alpha."""
    im = Image.merge("RGB", [Image.effect_noise((width, height), 40 + 10 * i) for i in range(3)])
    im.paste((30, 200, 90), (width // 4, height // 4, width // 2, height // 2))
    im.putalpha(Image.linear_gradient("L").resize((width, height)))
    return im


def test_png_variants_are_strict_png_whatever_the_thread_allowance() -> None:
    # Given a PNG large enough for w2048 to be deflated in pieces on threads
    data = encode(noisy_rgba(2100, 1300), "PNG", compress_level=1)
    one = render_variants(data, threads=1)
    two = render_variants(data, threads=2)
    for name in VARIANT_NAMES:
        if name == "og-image":
            continue
        for out in (one, two):
            # Then each is IHDR, IDAT, IEND with valid CRCs, and the IDAT is
            # one zlib stream a strict decoder accepts (adler32 checked)
            chunks = png_chunks(out[name].data)
            assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"], name
            width, height = struct.unpack(">II", chunks[0][1][:8])
            rows = zlib.decompress(chunks[1][1])
            assert len(rows) == height * (1 + 4 * width), name
        # and the pixels agree (resize strips may round a level apart;
        # compared premultiplied, as the colour of a nearly transparent
        # pixel is not visible)
        a, b = opened(one[name]), opened(two[name])
        assert a.mode == b.mode == "RGBA"
        diff = ImageChops.difference(a.convert("RGBa"), b.convert("RGBa"))
        assert max_difference(diff) <= 4, name
        assert max(ImageStat.Stat(diff).mean) < 0.5, name


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("parts", [1, 2, 5])
def test_png_writer_is_lossless(mode: str, parts: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    im = noisy_rgba(1500, 700).convert(mode)
    with ThreadPoolExecutor(max_workers=2) as pool:
        data = encode_png(im, pool, parts)
    back = Image.open(io.BytesIO(data))
    assert (back.mode, back.size) == (mode, im.size)
    assert back.tobytes() == im.tobytes()
    zlib.decompress(png_chunks(data)[1][1])  # a valid stream, adler32 included


# --------------------------------------------------------------------------
# metadata


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf'
    b'-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'dc:creator="SECRET-CREATOR"/></rdf:RDF></x:xmpmeta>'
)


def exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SECRET-MAKE"  # Make
    exif[0x0131] = "SECRET-SOFTWARE"
    gps = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.5)}
    exif[0x8825] = gps  # GPS IFD
    return exif


def assert_clean(r: Rendition) -> None:
    for marker in (b"SECRET", b"Exif", b"xmpmeta", b"ns.adobe.com/xap", b"ICC_PROFILE"):
        assert marker not in r.data, marker
    im = opened(r)
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile", "dpi"):
        assert key not in im.info, key
    if im.format == "PNG":
        for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP", b"pHYs"):
            assert chunk not in r.data, chunk


def test_metadata_is_stripped_from_jpeg() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(
        quadrants(300, 200),
        "JPEG",
        exif=exif_with_gps(),
        comment=b"SECRET-COMMENT",
        xmp=XMP,
        icc_profile=srgb,
        dpi=(300, 300),
    )
    src = Image.open(io.BytesIO(data))
    assert src.getexif().get_ifd(0x8825)  # the input really carries GPS
    assert "comment" in src.info
    assert "xmp" in src.info
    for r in render_variants(data).values():
        assert_clean(r)


def test_metadata_is_stripped_from_png_and_webp() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "SECRET-COMMENT")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    png = encode(
        transparent_sides(), "PNG", pnginfo=info, exif=exif_with_gps(), icc_profile=ADOBE_RGB
    )
    webp = encode(transparent_sides(), "WEBP", exif=exif_with_gps(), xmp=XMP)
    for data in (png, webp):
        for r in render_variants(data).values():
            assert_clean(r)
    assert_clean(Rendition(downscale_jpeg(png), 0, 0, "image/jpeg", "JPEG", "jpg"))


# --------------------------------------------------------------------------
# hostile input


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


HOSTILE: dict[str, Callable[[], bytes]] = {
    "zero bytes": lambda: b"",
    "text named .jpg": lambda: b"Hello, this is not an image at all.\n" * 10,
    "truncated JPEG": lambda: truncated(encode(quadrants(300, 200), "JPEG")),
    "JPEG header only": lambda: encode(quadrants(300, 200), "JPEG")[:300],
    "truncated PNG": lambda: truncated(encode(quadrants(300, 200).effect_spread(3), "PNG")),
    "truncated WebP": lambda: truncated(encode(quadrants(300, 200), "WEBP")),
    "huge declared PNG": lambda: crafted_png(100_000, 100_000),
    "zero-width PNG": lambda: crafted_png(0, 100),
    "zero-height PNG": lambda: crafted_png(100, 0),
    "1 x 60000": lambda: encode(Image.new("L", (1, 60_000), 128), "PNG"),
    "60000 x 1": lambda: encode(Image.new("L", (60_000, 1), 128), "PNG"),
    "BMP (unsupported)": lambda: encode(quadrants(30, 20), "BMP"),
    "TIFF (unsupported)": lambda: encode(quadrants(30, 20), "TIFF"),
    "PNG signature then garbage": lambda: b"\x89PNG\r\n\x1a\n" + b"\xff" * 200,
    "JPEG SOI then garbage": lambda: b"\xff\xd8\xff" + b"\x00\x13" * 200,
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_rejected_with_a_reason(case: str) -> None:
    with pytest.raises(ImageRejected) as info:
        render_variants(HOSTILE[case]())
    assert info.value.reason
    assert str(info.value) == info.value.reason


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(ImageRejected, match="pixels"):
        render_variants(crafted_png(100_000, 100_000))
    data = encode(quadrants(300, 200), "JPEG")
    with pytest.raises(ImageRejected, match="limit of 50000"):
        render_variants(data, max_pixels=50_000)
    assert render_variants(data, max_pixels=60_000)["w128"].width == 128


def test_pillow_global_limits_do_not_leak_other_exceptions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(quadrants(300, 200), "PNG")
    # Someone lowered Pillow's global bomb limit: its error becomes ours.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageRejected):
        render_variants(data)
    # Someone switched Pillow's guard off: our own limit still holds.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageRejected):
        render_variants(crafted_png(20_000, 20_000))


def test_moderate_aspect_ratio_still_renders() -> None:
    out = render_variants(encode(Image.new("RGB", (20, 1500), RED), "PNG"))
    assert (out["w2048"].width, out["w2048"].height) == (20, 1500)
    assert (out["thumb"].width, out["thumb"].height) == (128, 128)
    assert (out["og-image"].width, out["og-image"].height) == (1200, 630)


# --------------------------------------------------------------------------
# downscale_jpeg


def test_downscale_jpeg() -> None:
    data = encode(transparent_sides().resize((1000, 500)), "PNG")
    small = Image.open(io.BytesIO(downscale_jpeg(data)))
    assert small.format == "JPEG"
    assert small.size == (384, 192)
    assert close(small.getpixel((5, 100)), WHITE, 6)  # type: ignore[arg-type]
    tiny = Image.open(io.BytesIO(downscale_jpeg(encode(quadrants(100, 50), "PNG"))))
    assert tiny.size == (100, 50)
    with pytest.raises(ImageRejected):
        downscale_jpeg(b"nope")


# --------------------------------------------------------------------------
# random small images


MODES = st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1"])
FORMATS = st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    mode=MODES,
    fmt=FORMATS,
    seed=st.integers(0, 2**16),
)
def test_random_small_images(w: int, h: int, mode: str, fmt: str, seed: int) -> None:
    im = Image.effect_noise((w, h), 40 + seed % 50).convert("RGB")
    if mode == "P":
        im = im.convert("P")
    elif mode != "RGB":
        im = im.convert(mode)
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        im = im.convert("RGB")
    data = encode(im, fmt)
    if max(w, h) > engine.MAX_ASPECT_RATIO * min(w, h):
        with pytest.raises(ImageRejected, match="aspect"):
            render_variants(data)
        return
    out = render_variants(data)
    assert_geometry(out, w, h)
    assert out["og-image"].content_type == "image/jpeg"
    for r in out.values():
        assert len(r.data) > 0
