"""The AI stage: Rekognition DetectLabels on a small JPEG of the original.

Stored on the image record as ``ai``:

    {"labels": [{"name", "confidence" (0..1)}, ...],
     "dominant_colors": [{"hex" ("#rrggbb"), "pixel_percent", "simplified"}, ...],
     "model": "rekognition", "at": ISO 8601}

or, when the image cannot be labelled (a permanent failure), ``{"error": reason, ...}``.
:func:`parse_detect_labels` is pure; :func:`classify` does the one AWS call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.errors import PermanentError, aws_errors
from lambdas.variant.engine import ImageRejected, downscale_jpeg

AI_MODEL = "rekognition"
FEATURES = ["GENERAL_LABELS", "IMAGE_PROPERTIES"]
MAX_DOMINANT_COLORS = 10
ERROR_TEXT_LIMIT = 500

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def detect_labels_request(image_jpeg: bytes, settings: Settings) -> dict[str, Any]:
    """DetectLabels parameters: our 0..1 score becomes Rekognition's 0..100 confidence."""
    return {
        "Image": {"Bytes": image_jpeg},
        "MaxLabels": settings.ai_max_labels,
        "MinConfidence": settings.ai_min_classification_score * 100,
        "Features": list(FEATURES),
    }


def _confidence(value: Any) -> float | None:
    try:
        percent = float(value)
    except (TypeError, ValueError):
        return None
    if percent != percent:  # NaN
        return None
    return round(min(max(percent / 100.0, 0.0), 1.0), 4)


def _channel(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= 255:
        return None
    return int(value)


def _hex_colour(colour: Mapping[str, Any]) -> str | None:
    """``#rrggbb`` from HexCode, or from the RGB channels when HexCode is missing or malformed."""
    code = colour.get("HexCode")
    if isinstance(code, str):
        match = _HEX.fullmatch(code.strip())
        if match:
            return "#" + match.group(1).lower()
    channels = [_channel(colour.get(name)) for name in ("Red", "Green", "Blue")]
    if any(c is None for c in channels):
        return None
    return "#" + "".join(f"{c:02x}" for c in channels if c is not None)


def parse_labels(labels: Any, max_labels: int) -> list[dict[str, Any]]:
    """Named labels, highest confidence first, one entry per name, at most ``max_labels``."""
    best: dict[str, float] = {}
    for label in labels if isinstance(labels, list) else []:
        if not isinstance(label, Mapping):
            continue
        name = label.get("Name")
        confidence = _confidence(label.get("Confidence"))
        if not isinstance(name, str) or not name.strip() or confidence is None:
            continue
        name = name.strip()
        if confidence > best.get(name, -1.0):
            best[name] = confidence
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return [{"name": name, "confidence": conf} for name, conf in ranked[:max_labels]]


def parse_dominant_colors(properties: Any) -> list[dict[str, Any]]:
    """The whole image's dominant colours, largest share first."""
    colours = properties.get("DominantColors") if isinstance(properties, Mapping) else None
    parsed: list[dict[str, Any]] = []
    for colour in colours if isinstance(colours, list) else []:
        if not isinstance(colour, Mapping):
            continue
        hex_code = _hex_colour(colour)
        if hex_code is None:
            continue
        try:
            percent = round(min(max(float(colour.get("PixelPercent", 0.0)), 0.0), 100.0), 2)
        except (TypeError, ValueError):
            percent = 0.0
        simplified = colour.get("SimplifiedColor")
        parsed.append(
            {
                "hex": hex_code,
                "pixel_percent": percent,
                "simplified": simplified.strip().lower() if isinstance(simplified, str) else "",
            }
        )
    parsed.sort(key=lambda c: -c["pixel_percent"])
    return parsed[:MAX_DOMINANT_COLORS]


def parse_detect_labels(response: Mapping[str, Any], *, max_labels: int, at: str) -> dict[str, Any]:
    """Our ``ai`` value from a DetectLabels response (tolerates missing or odd fields)."""
    return {
        "labels": parse_labels(response.get("Labels"), max_labels),
        "dominant_colors": parse_dominant_colors(response.get("ImageProperties")),
        "model": AI_MODEL,
        "at": at,
    }


def ai_failure(reason: str, *, at: str) -> dict[str, Any]:
    """The ``ai`` value when labelling failed for good; the variants are unaffected."""
    return {"error": reason[:ERROR_TEXT_LIMIT], "model": AI_MODEL, "at": at}


def classify(settings: Settings, original: bytes, *, at: str) -> dict[str, Any]:
    """Label ``original``. Raises PermanentError (record it) or TransientError (retry)."""
    try:
        small = downscale_jpeg(
            original, settings.ai_image_width, max_pixels=settings.max_image_pixels
        )
    except ImageRejected as err:
        raise PermanentError(f"cannot prepare the image for labelling: {err.reason}") from None
    with aws_errors("rekognition detect labels"):
        response = aws.rekognition().detect_labels(**detect_labels_request(small, settings))
    return parse_detect_labels(response, max_labels=settings.ai_max_labels, at=at)
