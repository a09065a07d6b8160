"""Read a synthesized CloudFormation template and create its data-plane resources.

The local stack builds nothing from hand-written names or numbers: buckets, tables
(keys, indexes, TTL, billing), queues (visibility, retention, delay, redrive policy
with the DLQ resolved), KMS keys and secrets come from the template, and the
Lambda functions, event source mappings and EventBridge rules are read from it for
the in-process runtime. A minimal intrinsic-function evaluator (Ref, Fn::GetAtt,
Fn::Join, Fn::Sub, Fn::Select, Fn::Split) resolves references to the local
physical names; anything else is refused with a clear error.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account

CREATED_TYPES = (
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
    "AWS::SecretsManager::Secret",
)
RUN_TYPES = (
    "AWS::Lambda::Function",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Events::Rule",
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """The template uses something the local stack cannot evaluate or create."""


@dataclass
class Physical:
    """What a created resource answers to: its Ref value and its attributes."""

    logical_id: str
    type: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    # The deployment artifacts, from the template's asset metadata: the code asset's
    # directory and each layer's, in the template's order ("" / () when not local).
    code_path: str = ""
    layer_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class MappingSpec:
    logical_id: str
    function: str  # logical id of the function
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    max_concurrency: int
    enabled: bool


@dataclass(frozen=True)
class RuleTarget:
    function: str | None  # logical id when the target is one of the template's functions
    arn: str
    input: str | None


@dataclass(frozen=True)
class RuleSpec:
    logical_id: str
    schedule_expression: str
    enabled: bool
    targets: tuple[RuleTarget, ...]


def physical_name(
    stack_name: str, logical_id: str, *, lowercase: bool = False, limit: int = 80
) -> str:
    """A stable local name for a resource without an explicit one, as CloudFormation would
    derive it: stack name and logical id (lowercased for buckets), cut to the type's limit."""
    name = f"{stack_name}-{logical_id}"
    if lowercase:
        name = re.sub(r"[^a-z0-9.-]", "-", name.lower())
    return name[:limit].rstrip("-.")


class Provisioner:
    """Creates the template's data-plane resources through boto3 clients (moto server)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        clients: Callable[[str], Any],
        stack_name: str,
        region: str,
        account_id: str = ACCOUNT_ID,
    ) -> None:
        self.template = template
        self.resources: dict[str, Any] = dict(template.get("Resources", {}))
        self.client = clients
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.created: dict[str, Physical] = {}
        self._in_progress: set[str] = set()
        self.functions: dict[str, FunctionSpec] = {}
        self.mappings: list[MappingSpec] = []
        self.rules: list[RuleSpec] = []
        self._queue_urls_by_arn: dict[str, str] = {}
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local"
            ),
            "AWS::URLSuffix": "amazonaws.com",
        }
        if template.get("Conditions"):
            raise TemplateError(
                "the template uses Conditions, which the local stack cannot evaluate"
            )

    # -- what is and is not created ---------------------------------------------------
    def not_created(self) -> Counter[str]:
        """Resource types in the template that have no local counterpart."""
        return Counter(
            r.get("Type", "?")
            for r in self.resources.values()
            if r.get("Type") not in CREATED_TYPES + RUN_TYPES
        )

    def provision(self) -> None:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") in CREATED_TYPES:
                self._create(logical_id)
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::Lambda::Function":
                self._function(logical_id)
        for logical_id, resource in self.resources.items():
            kind = resource.get("Type")
            if kind == "AWS::Lambda::EventSourceMapping":
                self.mappings.append(self._mapping(logical_id))
            elif kind == "AWS::Events::Rule":
                self.rules.append(self._rule(logical_id))

    def outputs(self) -> dict[str, str]:
        return {
            name: str(self.resolve(output.get("Value")))
            for name, output in self.template.get("Outputs", {}).items()
        }

    # -- intrinsic functions ----------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(str(arg))
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, items = arg
                return str(separator).join(str(v) for v in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key.startswith("Fn::") or key == "Condition":
                raise TemplateError(f"the local stack cannot evaluate {key}")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resolved = {k: str(self.resolve(v)) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in resolved:
                return resolved[name]
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        parameters = self.template.get("Parameters", {})
        if name in parameters:
            if "Default" not in parameters[name]:
                raise TemplateError(f"parameter {name} has no default")
            return parameters[name]["Default"]
        return self._physical(name).ref

    def get_att(self, logical_id: str, attribute: str) -> str:
        physical = self._physical(logical_id)
        if attribute not in physical.attributes:
            raise TemplateError(
                f"{logical_id} ({physical.type}) has no attribute {attribute} locally"
            )
        return physical.attributes[attribute]

    def _physical(self, logical_id: str) -> Physical:
        if logical_id in self.created:
            return self.created[logical_id]
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"reference to unknown resource or parameter {logical_id}")
        kind = resource.get("Type")
        if kind in CREATED_TYPES:
            return self._create(logical_id)
        if kind == "AWS::Lambda::Function":
            name = self._name(logical_id, "FunctionName", limit=64)
            arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
            physical = Physical(logical_id, kind, name, {"Arn": arn})
            self.created[logical_id] = physical
            return physical
        raise TemplateError(f"{logical_id} ({kind}) is referenced but not created locally")

    def _name(self, logical_id: str, prop: str, *, lowercase: bool = False, limit: int = 80) -> str:
        explicit = self.resources[logical_id].get("Properties", {}).get(prop)
        if explicit is not None:
            return str(self.resolve(explicit))
        return physical_name(self.stack_name, logical_id, lowercase=lowercase, limit=limit)

    # -- creation ---------------------------------------------------------------------
    def _create(self, logical_id: str) -> Physical:
        if logical_id in self.created:
            return self.created[logical_id]
        if logical_id in self._in_progress:
            raise TemplateError(f"circular reference through {logical_id}")
        self._in_progress.add(logical_id)
        try:
            resource = self.resources[logical_id]
            kind = resource["Type"]
            props = resource.get("Properties", {})
            creator = {
                "AWS::S3::Bucket": self._bucket,
                "AWS::DynamoDB::Table": self._table,
                "AWS::SQS::Queue": self._queue,
                "AWS::KMS::Key": self._key,
                "AWS::SecretsManager::Secret": self._secret,
            }[kind]
            physical = creator(logical_id, props)
            self.created[logical_id] = physical
            return physical
        finally:
            self._in_progress.discard(logical_id)

    def _bucket(self, logical_id: str, props: Mapping[str, Any]) -> Physical:
        name = self._name(logical_id, "BucketName", lowercase=True, limit=63)
        s3 = self.client("s3")
        if self.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        if "BucketEncryption" in props:
            rules = self.resolve(props["BucketEncryption"])["ServerSideEncryptionConfiguration"]
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    # CloudFormation's property names differ from the API's here.
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": rule[
                                "ServerSideEncryptionByDefault"
                            ],
                            **(
                                {"BucketKeyEnabled": rule["BucketKeyEnabled"]}
                                if "BucketKeyEnabled" in rule
                                else {}
                            ),
                        }
                        for rule in rules
                    ]
                },
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration=self.resolve(
                    props["PublicAccessBlockConfiguration"]
                ),
            )
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration=self.resolve(props["VersioningConfiguration"])
            )
        return Physical(
            logical_id,
            "AWS::S3::Bucket",
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            },
        )

    def _table(self, logical_id: str, props: Mapping[str, Any]) -> Physical:
        name = self._name(logical_id, "TableName", limit=255)
        props = self.resolve(dict(props))
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
            if key in props:
                request[key] = props[key]
        if request["BillingMode"] == "PROVISIONED" and "ProvisionedThroughput" not in request:
            raise TemplateError(f"{logical_id}: provisioned billing without ProvisionedThroughput")
        stream = props.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {"StreamEnabled": True, **stream}
        ddb = self.client("dynamodb")
        description = ddb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = props.get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        return Physical(logical_id, "AWS::DynamoDB::Table", name, attributes)

    def _queue(self, logical_id: str, props: Mapping[str, Any]) -> Physical:
        fifo = bool(props.get("FifoQueue"))
        name = self._name(logical_id, "QueueName", limit=75 if fifo else 80)
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[str, str] = {}
        for prop in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "FifoQueue",
            "ContentBasedDeduplication",
        ):
            if prop in props:
                value = self.resolve(props[prop])
                attributes[prop] = str(value).lower() if isinstance(value, bool) else str(value)
        for prop in ("RedrivePolicy", "RedriveAllowPolicy"):
            if prop in props:
                attributes[prop] = json.dumps(self.resolve(props[prop]))
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"
        self._queue_urls_by_arn[arn] = url
        return Physical(
            logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueUrl": url, "QueueName": name}
        )

    def _key(self, logical_id: str, props: Mapping[str, Any]) -> Physical:
        kms = self.client("kms")
        request: dict[str, Any] = {}
        for prop in ("Description", "KeyUsage", "KeySpec"):
            if prop in props:
                request[prop] = str(self.resolve(props[prop]))
        metadata = kms.create_key(**request)["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        return Physical(
            logical_id,
            "AWS::KMS::Key",
            metadata["KeyId"],
            {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]},
        )

    def _secret(self, logical_id: str, props: Mapping[str, Any]) -> Physical:
        name = self._name(logical_id, "Name", limit=256)
        props = self.resolve(dict(props))
        if "SecretString" in props:
            value = str(props["SecretString"])
        else:
            generate = props.get("GenerateSecretString", {})
            value = secrets.token_urlsafe(int(generate.get("PasswordLength", 32)))
            if "SecretStringTemplate" in generate:
                document = json.loads(generate["SecretStringTemplate"])
                document[generate.get("GenerateStringKey", "password")] = value
                value = json.dumps(document)
        request: dict[str, Any] = {"Name": name, "SecretString": value}
        if "Description" in props:
            request["Description"] = props["Description"]
        arn = self.client("secretsmanager").create_secret(**request)["ARN"]
        return Physical(logical_id, "AWS::SecretsManager::Secret", arn, {"Id": arn})

    # -- what the runtime runs ------------------------------------------------------
    def _function(self, logical_id: str) -> FunctionSpec:
        physical = self._physical(logical_id)
        props = self.resources[logical_id].get("Properties", {})
        variables = self.resolve(props.get("Environment", {}).get("Variables", {}))
        spec = FunctionSpec(
            logical_id=logical_id,
            name=physical.ref,
            arn=physical.attributes["Arn"],
            handler=str(self.resolve(props.get("Handler", ""))),
            timeout_seconds=int(self.resolve(props.get("Timeout", 3))),
            memory_mb=int(self.resolve(props.get("MemorySize", 128))),
            environment={k: str(v) for k, v in variables.items()},
            code_path=self._asset_path(logical_id),
            layer_paths=tuple(self._layer_asset(layer) for layer in props.get("Layers", [])),
        )
        self.functions[logical_id] = spec
        return spec

    def _asset_path(self, logical_id: str) -> str:
        metadata = self.resources[logical_id].get("Metadata", {})
        return str(metadata.get("aws:asset:path", ""))

    def _layer_asset(self, layer: Any) -> str:
        """A layer of this template (a Ref to its LayerVersion), as its asset directory."""
        logical_id = layer.get("Ref") if isinstance(layer, dict) else None
        resource = self.resources.get(logical_id or "", {})
        if resource.get("Type") != "AWS::Lambda::LayerVersion" or not self._asset_path(
            str(logical_id)
        ):
            raise TemplateError(f"layer {layer!r} is not a LayerVersion asset of this template")
        return self._asset_path(str(logical_id))

    def _function_by_name_or_arn(self, value: str) -> str | None:
        for logical_id, spec in self.functions.items():
            if value in (spec.name, spec.arn) or value.startswith(spec.arn + ":"):
                return logical_id
        return None

    def _mapping(self, logical_id: str) -> MappingSpec:
        props = self.resources[logical_id].get("Properties", {})
        source_arn = str(self.resolve(props.get("EventSourceArn", "")))
        queue_url = self._queue_urls_by_arn.get(source_arn)
        if queue_url is None:
            raise TemplateError(
                f"{logical_id}: event source {source_arn} is not a queue of this template"
            )
        function = self._function_by_name_or_arn(str(self.resolve(props.get("FunctionName"))))
        if function is None:
            raise TemplateError(f"{logical_id}: its function is not in this template")
        scaling = self.resolve(props.get("ScalingConfig", {}))
        return MappingSpec(
            logical_id=logical_id,
            function=function,
            queue_url=queue_url,
            queue_arn=source_arn,
            batch_size=int(self.resolve(props.get("BatchSize", 10))),
            batching_window_seconds=int(
                self.resolve(props.get("MaximumBatchingWindowInSeconds", 0))
            ),
            report_batch_item_failures="ReportBatchItemFailures"
            in self.resolve(props.get("FunctionResponseTypes", [])),
            # Without a cap, Lambda scales out; two pollers are plenty on one laptop.
            max_concurrency=int(scaling.get("MaximumConcurrency", 2)),
            enabled=bool(self.resolve(props.get("Enabled", True))),
        )

    def _rule(self, logical_id: str) -> RuleSpec:
        props = self.resources[logical_id].get("Properties", {})
        targets = []
        for target in self.resolve(props.get("Targets", [])):
            arn = str(target.get("Arn", ""))
            targets.append(
                RuleTarget(
                    function=self._function_by_name_or_arn(arn),
                    arn=arn,
                    input=target.get("Input"),
                )
            )
        return RuleSpec(
            logical_id=logical_id,
            schedule_expression=str(self.resolve(props.get("ScheduleExpression", ""))),
            enabled=str(self.resolve(props.get("State", "ENABLED"))) == "ENABLED",
            targets=tuple(targets),
        )
