"""Activation providers: what happens once a hostname's DNS is proven.

``dns-only``: nothing more to do; the hostname is active.

``cloudflare``: Cloudflare for SaaS custom hostnames on our zone
(``CLOUDFLARE_API_BASE``/zones/``CLOUDFLARE_ZONE_ID``/custom_hostnames). The
hostname is looked up; created (POST) when absent; updated (PATCH, which asks
Cloudflare to validate again) when present but not active. Its ``status`` maps to:

- ``active`` (and ``active_redeploying``) -> active;
- ``blocked``, ``moved``, ``deleted``, ``pending_deletion``, ``pending_blocked``,
  ``test_blocked``, ``test_failed`` -> refused: permanent, recorded as ``blocked``;
- anything else (``pending``, ``pending_validation``, ...) -> not yet: re-checked
  on the DNS schedule.

HTTP errors: 5xx, 429, timeouts and unreachable -> TransientError (backoff, DLQ
after three receives). 404 (a wrong zone id) is transient too: a deployment
mistake that a redrive finishes once fixed. Other 4xx (Cloudflare refusing the
hostname itself) -> refused.

No usable token -> ProviderNotConfiguredError, a PermanentError the domain function
records as ``blocked`` once (no retries, no DLQ) with the one thing to do, "provider
not configured: store the API token in secret <ARN> (...)". That is: the secret
holds the placeholder the stack creates it with (``NOT-SET...``), holds nothing,
has no value yet; or Cloudflare answers 401/403 for the token. Retrying cannot help
until an operator stores a token; ``pixflare domain recheck`` restarts the domain
after that.

The token comes from CLOUDFLARE_API_TOKEN, else from the Secrets Manager secret at
CLOUDFLARE_API_TOKEN_SECRET_ARN (a plain string, or JSON with a ``token`` key). It
is sent only in the Authorization header and never logged or put in an error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from lambdas.shared import aws
from lambdas.shared.config import Settings
from lambdas.shared.deadline import Deadline
from lambdas.shared.errors import (
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
    aws_errors,
)

ActivationState = Literal["active", "pending", "refused"]

HTTP_TIMEOUT_SECONDS = 5.0
# A request is not started with less than this for it (a timeout that short only fails).
MIN_HTTP_SECONDS = 0.2
# An activation looks the hostname up, then creates or updates it.
REQUESTS_PER_ACTIVATION = 2
CLOUDFLARE_ACTIVE = frozenset({"active", "active_redeploying"})
CLOUDFLARE_REFUSED = frozenset(
    {
        "blocked",
        "moved",
        "deleted",
        "pending_deletion",
        "pending_blocked",
        "test_blocked",
        "test_failed",
    }
)
# Certificate validation over HTTP: Cloudflare serves the token once traffic reaches it.
SSL_SETTINGS = {"method": "http", "type": "dv"}
ERROR_BODY_LIMIT = 300


MAX_RESPONSE_BYTES = 1024 * 1024

# What the secret the stack creates holds until an operator stores the real token
# (infra/stack.py): recognisably not a token, and not a secret either.
TOKEN_PLACEHOLDER = "NOT-SET: store the Cloudflare API token here (see docs/operations.md)"  # noqa: S105
PLACEHOLDER_PREFIX = "NOT-SET"
# Where an operator reads how to store the token.
RUNBOOK = "pixflare docs/operations.md"
# Where the token comes from when it is set directly (tests, the embedded stack).
DIRECT_TOKEN_SOURCE = "CLOUDFLARE_API_TOKEN"  # noqa: S105  (a variable name)


class ProviderNotConfiguredError(PermanentError):
    """The activation provider has no usable API token: an operator must store one.

    Permanent for the domain (recorded as ``blocked``, no retries): retrying cannot
    help until the token is stored, and then ``pixflare domain recheck`` restarts it.
    The message never holds the token, only where to store it and why.
    """

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = cause
        super().__init__(f"{not_configured_message(source)}; {cause}")


def not_configured_message(source: str) -> str:
    """``provider not configured: store the API token in secret <ARN> (...)``."""
    where = source if source == DIRECT_TOKEN_SOURCE else f"secret {source}"
    return f"provider not configured: store the API token in {where} ({RUNBOOK})"


def is_placeholder(token: str) -> bool:
    """True for what is not a token: empty, or the placeholder the stack stores."""
    text = token.strip()
    return not text or text.upper().startswith(PLACEHOLDER_PREFIX)


@dataclass(frozen=True)
class ActivationResult:
    state: ActivationState
    detail: str  # why not active yet, or why refused; a short note when active
    provider: str


class ActivationProvider(Protocol):
    name: str
    # How long an activation can take at worst (what its caller sets aside for it).
    worst_case_seconds: float

    def activate(self, hostname: str, *, deadline: Deadline) -> ActivationResult:
        """Make the hostname serve our content; never past ``deadline``."""
        ...


class DnsOnlyProvider:
    name = "dns-only"
    worst_case_seconds = 0.0

    def activate(self, hostname: str, *, deadline: Deadline) -> ActivationResult:
        return ActivationResult("active", "DNS verified", self.name)


def secret_token(secret_arn: str) -> str:
    """The Cloudflare token stored in Secrets Manager (plain, or JSON ``{"token": ...}``).

    A secret without a value yet, empty, or still holding the placeholder ->
    ProviderNotConfiguredError. Access denied or throttled reads stay transient.
    """
    try:
        with aws_errors("read the Cloudflare token secret"):
            value = (
                aws.secretsmanager().get_secret_value(SecretId=secret_arn).get("SecretString", "")
            )
    except NotFoundError:
        # No AWSCURRENT value (or no such secret): nothing stored yet.
        raise ProviderNotConfiguredError(secret_arn, "the secret has no value") from None
    text = value.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("token", "")).strip()
        except (ValueError, AttributeError):
            text = ""
    if not text:
        raise ProviderNotConfiguredError(secret_arn, "the secret holds no token")
    if is_placeholder(text):
        raise ProviderNotConfiguredError(
            secret_arn, "the secret still holds the placeholder the stack created it with"
        )
    return text


class CloudflareProvider:
    name = "cloudflare"

    def __init__(
        self,
        *,
        api_base: str,
        zone_id: str,
        token: Callable[[], str],
        token_source: str = DIRECT_TOKEN_SOURCE,
        http_timeout: float = HTTP_TIMEOUT_SECONDS,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.zone_id = zone_id
        self._token_source = token
        # Where the token is stored (the secret's ARN, or the variable): named in errors.
        self.token_source = token_source
        self._token: str | None = None
        self.http_timeout = http_timeout
        self.worst_case_seconds = REQUESTS_PER_ACTIVATION * http_timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudflareProvider:
        zone_id = settings.require("cloudflare_zone_id")
        direct = settings.cloudflare_api_token.get_secret_value()
        if direct:
            return cls(api_base=settings.cloudflare_api_base, zone_id=zone_id, token=lambda: direct)
        secret_arn = settings.cloudflare_api_token_secret_arn
        if not secret_arn:
            raise ConfigError(
                "CLOUDFLARE_API_TOKEN or CLOUDFLARE_API_TOKEN_SECRET_ARN must be set "
                "for the cloudflare provider"
            )
        return cls(
            api_base=settings.cloudflare_api_base,
            zone_id=zone_id,
            token=lambda: secret_token(secret_arn),
            token_source=secret_arn,
        )

    # -- HTTP ---------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, *, timeout: float, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if self._token is None:
            token = self._token_source()
            if is_placeholder(token):
                raise ProviderNotConfiguredError(
                    self.token_source, "the token is empty or the placeholder"
                )
            self._token = token
        url = f"{self.api_base}/zones/{urllib.parse.quote(self.zone_id, safe='')}{path}"
        if not url.startswith(("https://", "http://")):
            raise ConfigError("CLOUDFLARE_API_BASE must be an http(s) URL")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310  (scheme checked above)
            url,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        what = f"Cloudflare {method} custom_hostnames"
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                # Bounded: custom-hostname answers are a few KiB.
                payload = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as err:
            raise self._http_error(what, err) from None
        except TimeoutError as err:
            raise TransientError(f"{what}: timed out after {timeout:.1f} s") from err
        except urllib.error.URLError as err:
            raise TransientError(f"{what}: unreachable ({err.reason})") from None
        except OSError as err:
            raise TransientError(f"{what}: {type(err).__name__}: {err}") from None
        try:
            document = json.loads(payload)
        except ValueError:
            raise TransientError(f"{what}: the response is not JSON") from None
        if not isinstance(document, dict) or not document.get("success", False):
            raise TransientError(f"{what}: unsuccessful response: {_errors_text(document)}")
        return document

    def _http_error(self, what: str, err: urllib.error.HTTPError) -> Exception:
        try:
            document = json.loads(err.read(MAX_RESPONSE_BYTES) or b"{}")
        except (ValueError, OSError):
            document = {}
        answer = f"HTTP {err.code} {_errors_text(document)}".strip()
        text = f"{what}: {answer}"
        if err.code in (401, 403):
            # The operator has to act (store a working token): permanent for the record.
            return ProviderNotConfiguredError(
                self.token_source,
                f"Cloudflare refused the token ({answer}); it needs SSL and Certificates / "
                "Custom Hostnames edit on the zone",
            )
        if err.code == 404:
            return TransientError(f"{text} (check CLOUDFLARE_ZONE_ID)")
        if err.code == 429 or err.code >= 500:
            return TransientError(text)
        return CloudflareRefusedError(text)

    # -- the flow -----------------------------------------------------------------------
    def _timeout(self, deadline: Deadline) -> float:
        """The next request's timeout: the client's, or the time left when less."""
        return deadline.cap(
            self.http_timeout, least=MIN_HTTP_SECONDS, what="the next Cloudflare request"
        )

    def activate(self, hostname: str, *, deadline: Deadline) -> ActivationResult:
        try:
            found = self._request(
                "GET",
                "/custom_hostnames?" + urllib.parse.urlencode({"hostname": hostname}),
                timeout=self._timeout(deadline),
            )
            existing = next(
                (
                    item
                    for item in found.get("result") or []
                    if str(item.get("hostname", "")).lower() == hostname
                ),
                None,
            )
            if existing is None:
                created = self._request(
                    "POST",
                    "/custom_hostnames",
                    body={"hostname": hostname, "ssl": SSL_SETTINGS},
                    timeout=self._timeout(deadline),
                )
                return self._result(created.get("result") or {})
            if str(existing.get("status", "")) in CLOUDFLARE_ACTIVE:
                return self._result(existing)
            hostname_id = str(existing.get("id", ""))
            if not hostname_id:
                raise TransientError("Cloudflare listed the hostname without an id")
            updated = self._request(
                "PATCH",
                f"/custom_hostnames/{urllib.parse.quote(hostname_id, safe='')}",
                body={"ssl": SSL_SETTINGS},
                timeout=self._timeout(deadline),
            )
            return self._result(updated.get("result") or {})
        except CloudflareRefusedError as refusal:
            return ActivationResult("refused", str(refusal), self.name)

    def _result(self, item: dict[str, Any]) -> ActivationResult:
        status = str(item.get("status", "")) or "unknown"
        ssl_status = str((item.get("ssl") or {}).get("status", "")) or "unknown"
        detail = f"Cloudflare custom hostname status {status} (certificate {ssl_status})"
        verification_errors = item.get("verification_errors") or []
        if verification_errors:
            detail += ": " + "; ".join(str(e) for e in verification_errors[:3])
        if status in CLOUDFLARE_ACTIVE:
            return ActivationResult("active", detail, self.name)
        if status in CLOUDFLARE_REFUSED:
            return ActivationResult("refused", detail, self.name)
        return ActivationResult("pending", detail, self.name)


class CloudflareRefusedError(Exception):
    """Cloudflare refused the hostname itself (a 4xx other than auth, zone or rate limit)."""


def _errors_text(document: Any) -> str:
    if not isinstance(document, dict):
        return ""
    errors = document.get("errors") or []
    parts = []
    for error in errors[:3]:
        if isinstance(error, dict):
            parts.append(f"{error.get('code', '')} {error.get('message', '')}".strip())
    return "; ".join(parts)[:ERROR_BODY_LIMIT]


def provider_from_settings(settings: Settings) -> ActivationProvider:
    if settings.custom_domain_provider == "cloudflare":
        return CloudflareProvider.from_settings(settings)
    return DnsOnlyProvider()
