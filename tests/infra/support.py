"""Walking a synthesized CloudFormation template (plain dicts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Template = dict[str, Any]

# cdk.json's defaults plus a CNAME target, so the domain worker is deployed and tested.
# Five event source mappings (variant, backup, domain, ingest, cron) need a budget of at
# least 11 (2 each + 1 for the scheduled runs); 12 leaves the variant mapping its 3.
DEFAULT: dict[str, str] = {
    "customDomainFallbackCname": "images.example.com",
    "concurrencyBudget": "12",
}
# cdk.json's defaults alone: no CNAME target, so custom domains are left out.
DOMAINS_OFF: dict[str, str] = {}
QUEUES_OFF = {"enableQueues": "false"}
# A second stack in the same account and region, with a larger concurrency budget.
NAMED = {**DEFAULT, "stackName": "PixflareStaging", "concurrencyBudget": "20"}
CUSTOM = {
    "enableAiClassification": "true",
    "customDomainProvider": "cloudflare",
    "customDomainFallbackCname": "edge.pixflare.example",
    "cloudflareZoneId": "0123456789abcdef0123456789abcdef",
    "alarmEmail": "ops@example.com",
    "cleanupSchedule": "cron(30 4 * * ? *)",
    "domainMaxChecks": "12",
    "concurrencyBudget": "12",
    "frontendOrigins": "https://photos.example.com,http://localhost:8000",
}
FRONTEND_ORIGINS = ["https://photos.example.com", "http://localhost:8000"]
# CDK's singleton provider behind bucket.add_event_notification (Custom::S3BucketNotifications).
NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


def resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template["Resources"].items() if res["Type"] == kind}


def props(template: Template, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id].get("Properties", {})
    return properties


def refs(value: Any) -> set[str]:
    """Logical ids referenced (Ref / Fn::GetAtt / ${X} in Fn::Sub) anywhere in ``value``."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Ref" in node and isinstance(node["Ref"], str):
                found.add(node["Ref"])
            if "Fn::GetAtt" in node:
                target = node["Fn::GetAtt"]
                found.add(target[0] if isinstance(target, list) else target.split(".")[0])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(value)
    return found


def pixflare_functions(template: Template) -> dict[str, dict[str, Any]]:
    """The project's functions: every AWS::Lambda::Function but the CDK's own providers."""
    return {
        lid: res
        for lid, res in resources(template, "AWS::Lambda::Function").items()
        if not lid.startswith(NOTIFICATIONS_HANDLER)
    }


def function_by_handler(template: Template, handler: str) -> str:
    matches = [
        lid
        for lid, res in resources(template, "AWS::Lambda::Function").items()
        if res["Properties"].get("Handler") == handler
    ]
    assert len(matches) == 1, f"{len(matches)} functions with handler {handler}"
    return matches[0]


def function_env(template: Template, function_id: str) -> dict[str, Any]:
    env: dict[str, Any] = props(template, function_id)["Environment"]["Variables"]
    return env


def role_of(template: Template, function_id: str) -> str:
    role = props(template, function_id)["Role"]
    return role["Fn::GetAtt"][0]


def role_statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Statements of every inline policy attached to the role."""
    statements: list[dict[str, Any]] = []
    for res in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in res["Properties"].get("Roles", []):
            statements.extend(res["Properties"]["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions(statements: list[dict[str, Any]]) -> set[str]:
    return {action for st in statements for action in as_list(st["Action"])}


def statements_on(statements: list[dict[str, Any]], logical_id: str) -> Iterator[dict[str, Any]]:
    for st in statements:
        if logical_id in refs(st.get("Resource")):
            yield st


def queue_by_name(template: Template, name: str) -> str:
    matches = [
        lid
        for lid, res in resources(template, "AWS::SQS::Queue").items()
        if res["Properties"].get("QueueName") == name
    ]
    assert len(matches) == 1, f"{len(matches)} queues named {name}"
    return matches[0]


def mapping_for(template: Template, function_id: str) -> dict[str, Any]:
    matches = [
        res["Properties"]
        for res in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if res["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert len(matches) == 1, f"{len(matches)} event source mappings for {function_id}"
    return matches[0]


def single(template: Template, kind: str, prefix: str) -> str:
    matches = [lid for lid in resources(template, kind) if lid.startswith(prefix)]
    assert len(matches) == 1, f"{len(matches)} {kind} starting with {prefix}: {matches}"
    return matches[0]
