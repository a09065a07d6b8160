"""The Lambda layers and the function code bundle, built without Docker.

``layers/build.py`` installs each layer from its lock file (manylinux aarch64
wheels for CPython 3.12, pinned with hashes) and compiles it to .pyc with CPython
3.12; each build is cached under ``layers/build/`` by a hash of its lock and
target. That hash is also the asset hash, so an unchanged layer is neither
re-fingerprinted nor re-uploaded, and any changed pin, transitive ones included,
makes a new layer version.

Powertools, boto3 and botocore come from our own deps layer rather than the
AWS-managed Powertools layer or the runtime's SDK: the versions are the ones the
tests run against, there is no account/region-specific layer ARN to look up, and
it works in every partition.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import AssetHashType, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.queue_worker import ARCHITECTURE, RUNTIME
from layers import build


def _asset(path: Path) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(path),
        asset_hash=build.content_key(path),
        asset_hash_type=AssetHashType.CUSTOM,
    )


def function_code() -> lambda_.Code:
    """Only the ``lambdas`` package, so ``lambdas.<fn>.handler.handler`` imports."""
    return _asset(build.stage_function_code())


class Layers(Construct):
    """``deps`` goes on every function; ``pillow`` on the variant function only."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.deps = self._layer("Deps", "deps")
        self.pillow = self._layer("Pillow", "pillow")

    def _layer(self, construct_id: str, name: str) -> lambda_.LayerVersion:
        spec = build.LAYERS[name]
        return lambda_.LayerVersion(
            self,
            construct_id,
            code=_asset(build.build_layer(name)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=f"Pixflare {name} layer: {spec.description}",
            removal_policy=RemovalPolicy.DESTROY,
        )
