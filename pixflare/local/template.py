"""Read a synthesized CloudFormation template and create its data-plane resources.

The local stack builds nothing from hand-written names or numbers: buckets, tables
(keys, indexes, TTL, billing), queues (visibility, retention, delay, redrive policy
with the DLQ resolved), KMS keys and secrets come from the template, and the
Lambda functions, event source mappings and EventBridge rules are read from it for
the in-process runtime. A minimal intrinsic-function evaluator (Ref, Fn::GetAtt,
Fn::Join, Fn::Sub, Fn::Select, Fn::Split) resolves references to the local
physical names; anything else is refused with a clear error.

Two more things are read from the template and served as on AWS: a bucket's
``Custom::S3BucketNotifications`` (CDK's ``bucket.add_event_notification``) is applied
to the moto bucket with PutBucketNotificationConfiguration, so moto delivers S3 events
(and the s3:TestEvent) to the queues; and an HTTP API (``AWS::ApiGatewayV2::Api``,
``Stage``, ``Integration``, ``Route``) becomes an :class:`HttpApiSpec` that the stack
serves on loopback (pixflare.local.http_api). A function that only serves as a custom
resource's provider (CDK's ``BucketNotificationsHandler``: inline code, referenced only
as a ``ServiceToken``) is not run: what it would do is done here directly.
"""

from __future__ import annotations

import hashlib
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
# Served by the stack (pixflare.local.http_api) or applied to the moto resources.
HTTP_API_TYPES = (
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
)
BUCKET_NOTIFICATIONS_TYPE = "Custom::S3BucketNotifications"
APPLIED_TYPES = (*HTTP_API_TYPES, BUCKET_NOTIFICATIONS_TYPE)
CUSTOM_RESOURCE_TYPES_PREFIX = "Custom::"
PROVIDER_REASON = "custom-resource provider, its work done locally"
# What else may name a function and so keeps it running even if it is also a provider.
_FUNCTION_USERS = (
    "AWS::Lambda::EventSourceMapping",
    "AWS::Events::Rule",
    "AWS::ApiGatewayV2::Integration",
)
DEFAULT_STAGE = "$default"
INTEGRATION_TIMEOUT_MS = 30000  # an HTTP API integration's default (and maximum) timeout
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


@dataclass(frozen=True)
class RouteSpec:
    """One ``AWS::ApiGatewayV2::Route`` with its Lambda proxy integration."""

    logical_id: str
    route_key: str  # "GET /v1/images/{id}", "ANY /x" or "$default"
    function: str  # logical id of the integration's function
    payload_format: str = "2.0"
    timeout_ms: int = INTEGRATION_TIMEOUT_MS

    @property
    def method(self) -> str:
        """The route's method ("ANY" for any, and for $default)."""
        return "ANY" if self.route_key == DEFAULT_STAGE else self.route_key.split(" ", 1)[0]

    @property
    def path(self) -> str | None:
        """The path template; None for the $default route."""
        return None if self.route_key == DEFAULT_STAGE else self.route_key.split(" ", 1)[1]


@dataclass(frozen=True)
class CorsSpec:
    """An HTTP API's CorsConfiguration (API Gateway answers preflights itself)."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True)
class ThrottleSpec:
    """A stage's route throttling: steady requests per second and burst (a token bucket)."""

    rate_limit: float
    burst_limit: int


@dataclass(frozen=True)
class HttpApiSpec:
    """An HTTP API of the template, as the local stack serves it."""

    logical_id: str
    api_id: str
    name: str
    endpoint: str  # ApiEndpoint: the local server's URL (https://{id}.execute-api... on AWS)
    stage: str = DEFAULT_STAGE
    routes: tuple[RouteSpec, ...] = ()
    cors: CorsSpec | None = None
    # The stage's DefaultRouteSettings (each route its own bucket, as on AWS); None: no
    # stage throttling (the account's 10,000 requests/s is not emulated).
    throttle: ThrottleSpec | None = None
    route_throttles: Mapping[str, ThrottleSpec] = field(default_factory=dict)


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
        api_endpoint: Callable[[str], str] | None = None,
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
        self.http_apis: list[HttpApiSpec] = []
        # Each HTTP API's endpoint (ApiEndpoint), asked for with the API's logical id when
        # first referenced: the stack binds the API's loopback server then.
        self._api_endpoint = api_endpoint or self._aws_api_endpoint
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
        self.providers = self._custom_resource_providers()

    # -- what is and is not created ---------------------------------------------------
    def not_created(self) -> Counter[str]:
        """Resource types in the template that have no local counterpart (a function
        left out as a custom resource's provider is listed with the reason)."""
        counted: Counter[str] = Counter()
        for logical_id, resource in self.resources.items():
            kind = resource.get("Type", "?")
            if logical_id in self.providers:
                counted[f"{kind} ({PROVIDER_REASON})"] += 1
            elif kind not in CREATED_TYPES + RUN_TYPES + APPLIED_TYPES:
                counted[kind] += 1
        return counted

    def provision(self) -> None:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") in CREATED_TYPES:
                self._create(logical_id)
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == BUCKET_NOTIFICATIONS_TYPE:
                self._bucket_notifications(logical_id)
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::ApiGatewayV2::Api":
                self._physical(logical_id)  # its endpoint, before anything names it
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::Lambda::Function" and logical_id not in self.providers:
                self._function(logical_id)
        for logical_id, resource in self.resources.items():
            kind = resource.get("Type")
            if kind == "AWS::Lambda::EventSourceMapping":
                self.mappings.append(self._mapping(logical_id))
            elif kind == "AWS::Events::Rule":
                self.rules.append(self._rule(logical_id))
            elif kind == "AWS::ApiGatewayV2::Api":
                self.http_apis.append(self._http_api(logical_id))

    def _custom_resource_providers(self) -> frozenset[str]:
        """Functions named only as a custom resource's ServiceToken (never by an event
        source mapping, a rule, an API integration or an output): not run locally."""
        tokens: set[str] = set()
        used: set[str] = set(references(self.template.get("Outputs", {})))
        for resource in self.resources.values():
            kind = str(resource.get("Type", ""))
            props = resource.get("Properties", {})
            if kind.startswith(CUSTOM_RESOURCE_TYPES_PREFIX) or (
                kind == "AWS::CloudFormation::CustomResource"
            ):
                tokens |= references(props.get("ServiceToken"))
            elif kind in _FUNCTION_USERS:
                used |= references(props)
        return frozenset(
            logical_id
            for logical_id in tokens - used
            if self.resources.get(logical_id, {}).get("Type") == "AWS::Lambda::Function"
        )

    def outputs(self) -> dict[str, str]:
        return {
            name: self.localize(str(self.resolve(output.get("Value"))))
            for name, output in self.template.get("Outputs", {}).items()
        }

    def localize(self, value: str) -> str:
        """A URL of one of the template's HTTP APIs as AWS would serve it (built with
        Fn::Join, as CDK builds a stage's URL) becomes the local server's URL."""
        for physical in self.created.values():
            if physical.type != "AWS::ApiGatewayV2::Api":
                continue
            suffix = self.pseudo["AWS::URLSuffix"]
            aws = f"https://{physical.ref}.execute-api.{self.region}.{suffix}"
            if value == aws or value.startswith(aws + "/"):
                return physical.attributes["ApiEndpoint"] + value[len(aws) :]
        return value

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
        if kind in HTTP_API_TYPES:
            physical = self._http_api_physical(logical_id, str(kind))
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
            environment={k: self.localize(str(v)) for k, v in variables.items()},
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

    # -- S3 event notifications -------------------------------------------------------
    def _bucket_notifications(self, logical_id: str) -> None:
        """CDK's Custom::S3BucketNotifications, done as its provider does it: the bucket's
        whole notification configuration put at once. moto then sends each matching
        event (and, on configuration, an s3:TestEvent) to the queue, as S3 does."""
        props = self.resources[logical_id].get("Properties", {})
        bucket = str(self.resolve(props.get("BucketName")))
        configuration = self.resolve(props.get("NotificationConfiguration", {}))
        unsupported = sorted(set(configuration) - {"QueueConfigurations"})
        if unsupported:
            raise TemplateError(
                f"{logical_id}: only queue destinations are delivered locally, "
                f"not {', '.join(unsupported)}"
            )
        queues = []
        for entry in configuration.get("QueueConfigurations", []):
            arn = str(entry.get("QueueArn", ""))
            if arn not in self._queue_urls_by_arn:
                raise TemplateError(f"{logical_id}: {arn} is not a queue of this template")
            queue: dict[str, Any] = {"QueueArn": arn, "Events": list(entry.get("Events", []))}
            if "Id" in entry:
                queue["Id"] = str(entry["Id"])
            rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
            if rules:
                queue["Filter"] = {
                    "Key": {
                        "FilterRules": [
                            {"Name": str(rule["Name"]), "Value": str(rule["Value"])}
                            for rule in rules
                        ]
                    }
                }
            queues.append(queue)
        self.client("s3").put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues}
        )

    # -- the HTTP API -----------------------------------------------------------------
    def _local_id(self, logical_id: str, length: int) -> str:
        """A stable id like API Gateway's (lowercase letters and digits)."""
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).digest()
        alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
        number = int.from_bytes(digest, "big")
        chars = []
        for _ in range(length):
            number, index = divmod(number, len(alphabet))
            chars.append(alphabet[index])
        return "".join(chars)

    def _aws_api_endpoint(self, logical_id: str) -> str:
        """Where AWS would serve the API (without a server of the stack's to name)."""
        api_id = self._local_id(logical_id, 10)
        return f"https://{api_id}.execute-api.{self.region}.amazonaws.com"

    def _http_api_physical(self, logical_id: str, kind: str) -> Physical:
        props = self.resources[logical_id].get("Properties", {})
        if kind == "AWS::ApiGatewayV2::Api":
            if str(self.resolve(props.get("ProtocolType", ""))) != "HTTP":
                raise TemplateError(f"{logical_id}: only HTTP APIs are served locally")
            for prop in ("Body", "BodyS3Location", "Target", "RouteKey"):
                if prop in props:
                    raise TemplateError(
                        f"{logical_id}: an API defined by {prop} is not served locally; "
                        "define its routes and integrations as resources"
                    )
            api_id = self._local_id(logical_id, 10)
            endpoint = self._api_endpoint(logical_id)
            return Physical(logical_id, kind, api_id, {"ApiId": api_id, "ApiEndpoint": endpoint})
        if kind == "AWS::ApiGatewayV2::Stage":
            return Physical(logical_id, kind, str(self.resolve(props.get("StageName", ""))))
        if kind == "AWS::ApiGatewayV2::Integration":
            integration_id = self._local_id(logical_id, 7)
            return Physical(logical_id, kind, integration_id, {"IntegrationId": integration_id})
        route_id = self._local_id(logical_id, 7)
        return Physical(logical_id, kind, route_id, {"RouteId": route_id})

    def _of_api(self, kind: str, api_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The resources of one type that belong to the API (by ApiId)."""
        found = []
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != kind:
                continue
            props = resource.get("Properties", {})
            if str(self.resolve(props.get("ApiId"))) == api_id:
                found.append((logical_id, props))
        return found

    def _integration_function(self, logical_id: str, props: Mapping[str, Any]) -> str:
        kind = str(self.resolve(props.get("IntegrationType", "")))
        if kind != "AWS_PROXY":
            raise TemplateError(
                f"{logical_id}: integration type {kind} is not served locally (AWS_PROXY only)"
            )
        uri = str(self.resolve(props.get("IntegrationUri", "")))
        # A function ARN, or the apigateway:lambda:path/.../functions/ARN/invocations form.
        match = re.search(r"/functions/(.+)/invocations$", uri)
        function = self._function_by_name_or_arn(match.group(1) if match else uri)
        if function is None:
            raise TemplateError(f"{logical_id}: {uri} is not a function of this template")
        return function

    def _http_api(self, logical_id: str) -> HttpApiSpec:
        physical = self._physical(logical_id)
        api_id = physical.ref
        props = self.resources[logical_id].get("Properties", {})
        integrations = {}
        for integration_id, integration in self._of_api("AWS::ApiGatewayV2::Integration", api_id):
            integrations[self._physical(integration_id).ref] = (integration_id, integration)
        routes = []
        for route_id, route in self._of_api("AWS::ApiGatewayV2::Route", api_id):
            authorization = str(self.resolve(route.get("AuthorizationType", "NONE")))
            if authorization != "NONE":
                raise TemplateError(
                    f"{route_id}: authorization {authorization} is not emulated locally"
                )
            target = str(self.resolve(route.get("Target", "")))
            integration_ref = target.removeprefix("integrations/")
            if integration_ref not in integrations:
                raise TemplateError(f"{route_id}: target {target!r} is not an integration")
            integration_logical_id, integration = integrations[integration_ref]
            payload = str(self.resolve(integration.get("PayloadFormatVersion", "2.0")))
            if payload != "2.0":
                raise TemplateError(
                    f"{integration_logical_id}: payload format {payload} is not served locally"
                )
            routes.append(
                RouteSpec(
                    logical_id=route_id,
                    route_key=str(self.resolve(route.get("RouteKey"))),
                    function=self._integration_function(integration_logical_id, integration),
                    payload_format=payload,
                    timeout_ms=int(
                        self.resolve(integration.get("TimeoutInMillis", INTEGRATION_TIMEOUT_MS))
                    ),
                )
            )
        stages = self._of_api("AWS::ApiGatewayV2::Stage", api_id)
        stage_name: str = DEFAULT_STAGE
        stage: dict[str, Any] = {}
        for candidate_id, candidate in stages:
            if self._physical(candidate_id).ref == DEFAULT_STAGE or not stage:
                stage_name, stage = self._physical(candidate_id).ref, candidate
        settings = self.resolve(stage.get("DefaultRouteSettings", {}))
        route_settings = self.resolve(stage.get("RouteSettings", {}))
        return HttpApiSpec(
            logical_id=logical_id,
            api_id=api_id,
            name=str(self.resolve(props.get("Name", logical_id))),
            endpoint=physical.attributes["ApiEndpoint"],
            stage=stage_name,
            routes=tuple(routes),
            cors=_cors(self.resolve(props["CorsConfiguration"]))
            if "CorsConfiguration" in props
            else None,
            throttle=_throttle(settings),
            route_throttles={
                str(key): throttle
                for key, value in route_settings.items()
                if (throttle := _throttle(value)) is not None
            },
        )


def _cors(config: Mapping[str, Any]) -> CorsSpec:
    def strings(key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in config.get(key, []))

    max_age = config.get("MaxAge")
    return CorsSpec(
        allow_origins=strings("AllowOrigins"),
        allow_methods=tuple(m.upper() for m in strings("AllowMethods")),
        allow_headers=tuple(h.lower() for h in strings("AllowHeaders")),
        expose_headers=tuple(h.lower() for h in strings("ExposeHeaders")),
        max_age_seconds=int(max_age) if max_age is not None else None,
        allow_credentials=bool(config.get("AllowCredentials", False)),
    )


def _throttle(settings: Mapping[str, Any]) -> ThrottleSpec | None:
    rate, burst = settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
    if rate is None and burst is None:
        return None
    # One unset: API Gateway's account-level figures stand in for it.
    return ThrottleSpec(
        rate_limit=float(rate if rate is not None else 10000),
        burst_limit=int(burst if burst is not None else 5000),
    )


def references(value: Any) -> set[str]:
    """The logical ids a template value names (Ref, Fn::GetAtt, Fn::Sub variables)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
            elif key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for name in _SUB_VARIABLE.findall(str(text)):
                    found.add(name.split(".", 1)[0])
                found |= references(variables)
            else:
                found |= references(arg)
    return found
