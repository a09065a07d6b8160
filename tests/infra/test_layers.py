"""The layers are built for the functions' target: CPython 3.12 on aarch64 Linux."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from layers import build

pytestmark = pytest.mark.slow

EM_AARCH64 = 183


def _elf_machine(path: Path) -> tuple[int, int]:
    """(EI_CLASS, e_machine) of an ELF file."""
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    ei_class, ei_data = header[4], header[5]
    order = "<" if ei_data == 1 else ">"
    (machine,) = struct.unpack(f"{order}H", header[18:20])
    return ei_class, machine


@pytest.fixture(scope="session")
def pillow_layer() -> Path:
    return build.build_layer("pillow") / "python"


@pytest.fixture(scope="session")
def deps_layer() -> Path:
    return build.build_layer("deps") / "python"


def test_pillow_core_module_is_aarch64_cp312(pillow_layer: Path) -> None:
    module = pillow_layer / "PIL" / "_imaging.cpython-312-aarch64-linux-gnu.so"
    assert module.is_file()
    assert _elf_machine(module) == (2, EM_AARCH64)  # 64-bit, AArch64


def test_no_foreign_extension_modules(pillow_layer: Path, deps_layer: Path) -> None:
    for site in (pillow_layer, deps_layer):
        for so in site.rglob("*.cpython-*.so"):
            assert "cpython-312-aarch64-linux-gnu" in so.name, so


def test_deps_layer_contents(deps_layer: Path) -> None:
    for package in (
        "aws_lambda_powertools",
        "aws_xray_sdk",
        "pydantic",
        "pydantic_core",
        "dns",
        "cryptography",
    ):
        assert (deps_layer / package).is_dir(), package
    (core,) = (deps_layer / "pydantic_core").glob("_pydantic_core.cpython-312-aarch64-linux-gnu.so")
    assert _elf_machine(core) == (2, EM_AARCH64)
    # The runtime's boto3/botocore stay in charge; the layer carries neither.
    for provided in ("boto3", "botocore", "s3transfer", "urllib3"):
        assert not (deps_layer / provided).exists(), provided
    assert not list(deps_layer.rglob("__pycache__"))


def test_pillow_not_in_deps_layer(deps_layer: Path) -> None:
    assert not (deps_layer / "PIL").exists()


def test_build_is_cached_by_inputs() -> None:
    first = build.build_layer("pillow")
    assert build.build_layer("pillow") == first
    assert first.name == f"pillow-{build.layer_key(build.LAYERS['pillow'])}"
