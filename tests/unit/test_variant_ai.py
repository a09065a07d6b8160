"""Parsing Rekognition DetectLabels responses into the record's ``ai`` value."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.shared.config import Settings
from lambdas.variant.ai import (
    AI_MODEL,
    MAX_DOMINANT_COLORS,
    ai_failure,
    detect_labels_request,
    parse_detect_labels,
)
from lambdas.variant.pipeline import ai_input_variant

AT = "2026-01-02T03:04:05.000000Z"

# The shape Rekognition returns with Features=[GENERAL_LABELS, IMAGE_PROPERTIES].
RESPONSE: dict[str, Any] = {
    "Labels": [
        {"Name": "Dog", "Confidence": 99.5, "Parents": [{"Name": "Animal"}], "Instances": []},
        {"Name": "Animal", "Confidence": 99.9, "Parents": []},
        {"Name": "Grass", "Confidence": 61.25},
    ],
    "ImageProperties": {
        "Quality": {"Brightness": 80.1, "Sharpness": 90.0, "Contrast": 70.2},
        "DominantColors": [
            {
                "Red": 13,
                "Green": 128,
                "Blue": 64,
                "HexCode": "#0D8040",
                "CSSColor": "seagreen",
                "SimplifiedColor": "green",
                "PixelPercent": 22.126,
            },
            {
                "Red": 250,
                "Green": 250,
                "Blue": 250,
                "HexCode": "#fafafa",
                "CSSColor": "snow",
                "SimplifiedColor": "white",
                "PixelPercent": 48.0,
            },
        ],
        "Foreground": {"DominantColors": [{"HexCode": "#000000", "PixelPercent": 90.0}]},
    },
    "LabelModelVersion": "3.0",
}


def test_labels_and_colours_are_mapped_to_our_shape() -> None:
    ai = parse_detect_labels(RESPONSE, max_labels=10, at=AT)

    assert ai == {
        "labels": [
            {"name": "Animal", "confidence": 0.999},
            {"name": "Dog", "confidence": 0.995},
            {"name": "Grass", "confidence": 0.6125},
        ],
        # The whole image's colours (not the foreground's), largest share first.
        "dominant_colors": [
            {"hex": "#fafafa", "pixel_percent": 48.0, "simplified": "white"},
            {"hex": "#0d8040", "pixel_percent": 22.13, "simplified": "green"},
        ],
        "model": AI_MODEL,
        "at": AT,
    }


def test_labels_are_capped_and_deduplicated_keeping_the_best_score() -> None:
    response = {
        "Labels": [
            {"Name": "Cat", "Confidence": 40.0},
            {"Name": "Cat", "Confidence": 80.0},
            {"Name": "Sofa", "Confidence": 70.0},
            {"Name": "Room", "Confidence": 60.0},
        ]
    }
    ai = parse_detect_labels(response, max_labels=2, at=AT)
    assert ai["labels"] == [
        {"name": "Cat", "confidence": 0.8},
        {"name": "Sofa", "confidence": 0.7},
    ]


@pytest.mark.parametrize(
    ("label", "kept"),
    [
        ({"Name": "Tree", "Confidence": 50}, True),
        ({"Name": "  Tree  ", "Confidence": 50}, True),
        ({"Name": "", "Confidence": 50}, False),
        ({"Confidence": 50}, False),
        ({"Name": "Tree"}, False),
        ({"Name": "Tree", "Confidence": "n/a"}, False),
        ({"Name": "Tree", "Confidence": float("nan")}, False),
        ({"Name": 7, "Confidence": 50}, False),
        ("Tree", False),
    ],
)
def test_malformed_labels_are_dropped(label: Any, kept: bool) -> None:
    ai = parse_detect_labels({"Labels": [label]}, max_labels=10, at=AT)
    assert ai["labels"] == ([{"name": "Tree", "confidence": 0.5}] if kept else [])


def test_confidence_is_clamped_to_zero_one() -> None:
    response = {"Labels": [{"Name": "A", "Confidence": 130.0}, {"Name": "B", "Confidence": -3}]}
    ai = parse_detect_labels(response, max_labels=10, at=AT)
    assert [label["confidence"] for label in ai["labels"]] == [1.0, 0.0]


@pytest.mark.parametrize(
    ("colour", "expected_hex"),
    [
        ({"HexCode": "#A1B2C3"}, "#a1b2c3"),
        ({"HexCode": "a1b2c3"}, "#a1b2c3"),
        # A malformed hex code falls back to the channels.
        ({"HexCode": "#zzz", "Red": 255, "Green": 0, "Blue": 16}, "#ff0010"),
        ({"Red": 1, "Green": 2, "Blue": 3}, "#010203"),
        ({"Red": 1, "Green": 2}, None),
        ({"Red": 300, "Green": 2, "Blue": 3}, None),
        ({"HexCode": "#12345"}, None),
    ],
)
def test_colour_hex_comes_from_hexcode_or_channels(
    colour: dict[str, Any], expected_hex: str | None
) -> None:
    response = {"ImageProperties": {"DominantColors": [{**colour, "PixelPercent": 10}]}}
    colours = parse_detect_labels(response, max_labels=10, at=AT)["dominant_colors"]
    assert [c["hex"] for c in colours] == ([expected_hex] if expected_hex else [])


def test_colour_list_is_bounded_and_tolerates_missing_fields() -> None:
    many = [{"HexCode": f"#0000{i:02x}", "PixelPercent": i} for i in range(30)]
    colours = parse_detect_labels(
        {"ImageProperties": {"DominantColors": [*many, {"HexCode": "#ffffff"}]}},
        max_labels=10,
        at=AT,
    )["dominant_colors"]
    assert len(colours) == MAX_DOMINANT_COLORS
    assert colours[0] == {"hex": "#00001d", "pixel_percent": 29.0, "simplified": ""}


@pytest.mark.parametrize(
    "response",
    [{}, {"Labels": None, "ImageProperties": None}, {"Labels": "x", "ImageProperties": []}],
)
def test_empty_or_odd_responses_give_empty_lists(response: dict[str, Any]) -> None:
    ai = parse_detect_labels(response, max_labels=10, at=AT)
    assert ai == {"labels": [], "dominant_colors": [], "model": AI_MODEL, "at": AT}


def test_request_uses_configured_limits() -> None:
    settings = Settings(ai_max_labels=7, ai_min_classification_score=0.35)
    request = detect_labels_request(b"jpeg-bytes", settings)
    assert request == {
        "Image": {"Bytes": b"jpeg-bytes"},
        "MaxLabels": 7,
        "MinConfidence": pytest.approx(35.0),
        "Features": ["GENERAL_LABELS", "IMAGE_PROPERTIES"],
    }


def test_failure_value_carries_a_bounded_reason() -> None:
    value = ai_failure("rekognition detect labels: InvalidImageFormatException " + "x" * 900, at=AT)
    assert value["error"].startswith("rekognition detect labels: InvalidImageFormatException")
    assert len(value["error"]) == 500
    assert value["at"] == AT


@pytest.mark.parametrize(
    ("ai_width", "variant"),
    [(64, "w128"), (128, "w128"), (384, "w512"), (1000, "w1024"), (2048, "w2048"), (2049, None)],
)
def test_ai_input_is_the_narrowest_width_variant_wide_enough(
    ai_width: int, variant: str | None
) -> None:
    assert ai_input_variant(ai_width) == variant
