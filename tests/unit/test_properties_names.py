"""Property-based checks across names: no accepted owner / album / filename can produce a
key outside its owner's prefix or collide with another image's key; no accepted hostname
lies inside Pixflare's own domain; valid messages round-trip. (Single-field rules are in
test_keys.py, test_messages.py and test_domain_hostnames.py.)"""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from publicsuffixlist import PSLFILE

from lambdas.domain.hostnames import (
    InvalidHostnameError,
    normalize_hostname,
    own_domains,
    public_suffix,
    validate_hostname,
    verification_name,
)
from lambdas.shared.keys import LEAF_NAMES, ImagePath, InvalidNameError, parse_key
from lambdas.shared.messages import BackupJob, DomainCheck, VariantJob, parse_message

SAFE = string.ascii_letters + string.digits + "._-"
# Mostly valid-looking names, with hostile characters mixed in.
names = st.one_of(
    st.text(alphabet=SAFE, min_size=1, max_size=70),
    st.text(alphabet=SAFE + "/\\ \x00.\u202e日", min_size=0, max_size=20),
)


def path_or_none(owner: str, album: str, filename: str) -> ImagePath | None:
    try:
        return ImagePath(owner, album, filename)
    except InvalidNameError:
        return None


@given(names, names, names, names, names, names)
def test_accepted_names_stay_inside_their_owner_and_never_collide(
    o1: str, a1: str, f1: str, o2: str, a2: str, f2: str
) -> None:
    first, second = path_or_none(o1, a1, f1), path_or_none(o2, a2, f2)
    for path, owner in ((first, o1), (second, o2)):
        if path is None:
            continue
        for key in path.all_keys():
            parts = key.split("/")
            assert len(parts) == 4 and parts[0] == owner and parts[3] in LEAF_NAMES
            assert ".." not in parts and "" not in parts
            assert key.startswith(path.prefix) and path.prefix.startswith(owner + "/")
            assert parse_key(key)[0] == path
    if first is not None and second is not None:
        same = (o1, a1, f1) == (o2, a2, f2)
        assert (set(first.all_keys()) & set(second.all_keys()) != set()) == same
        assert (first.claim == second.claim) == same


labels = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=20)


@given(st.lists(labels, min_size=1, max_size=4), st.sampled_from(["", ".", "  "]))
def test_no_accepted_hostname_is_inside_our_own_domain(sub: list[str], tail: str) -> None:
    reserved = own_domains("cname.pixflare.test", ["pixflare.example"])
    for own in ("pixflare.test", "PIXFLARE.test", "pixflare.example"):
        raw = ".".join([*sub, own]) + tail
        try:
            validate_hostname(raw, reserved=reserved)
        except InvalidHostnameError:
            continue
        raise AssertionError(f"{raw!r} was accepted inside our own domain")


@given(st.lists(labels, min_size=1, max_size=3), st.booleans())
def test_accepted_hostnames_are_canonical_and_their_dns_names_stay_inside(
    sub: list[str], shout: bool
) -> None:
    raw = ".".join([*sub, "customer.example.com"])
    try:
        hostname = validate_hostname(raw.upper() + "." if shout else raw)
    except InvalidHostnameError:
        return
    assert hostname == normalize_hostname(raw) == hostname.lower()
    assert hostname.endswith(".customer.example.com")
    assert verification_name(hostname).endswith("." + hostname)


def _listed_suffixes() -> list[str]:
    """The plain rules of the bundled Public Suffix List (no wildcards or exceptions)."""
    with open(PSLFILE, encoding="utf-8") as listing:
        rules = {line.split()[0] for line in listing if line.strip() and line[0] not in "/"}
    return sorted(r for r in rules if r[0] not in "*!" and f"*.{r}" not in rules)


@given(st.sampled_from(_listed_suffixes()), st.from_regex(r"\A[a-z][a-z0-9]{0,15}\Z"))
def test_no_apex_under_any_listed_suffix_is_accepted(suffix: str, name: str) -> None:
    apex = f"{name}.{suffix}"
    assume(public_suffix(normalize_hostname(apex)) == normalize_hostname(suffix))
    with pytest.raises(InvalidHostnameError, match="is an apex domain"):
        validate_hostname(apex)
    assert validate_hostname(f"img.{apex}") == normalize_hostname(f"img.{apex}")


ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
owners = st.text(alphabet=SAFE, min_size=1, max_size=64).filter(lambda s: s[0].isalnum())


@given(ids, owners, st.sampled_from(["upload", "delete"]), st.integers(1, 10_000))
def test_valid_messages_round_trip_and_keep_their_idempotency_key(
    image_id: str, owner: str, action: str, attempt: int
) -> None:
    assume(path_or_none(owner, "a", "f.jpg") is not None)
    jobs = [
        VariantJob.model_validate({"imageId": image_id, "owner": owner}),
        BackupJob.model_validate(
            {
                "imageId": image_id,
                "owner": owner,
                "action": action,
                "album": "a",
                "filename": "f.jpg",
                "requestedAt": "2025-01-01T00:00:00Z",
            }
        ),
        DomainCheck.model_validate(
            {"hostname": "img.example.com", "owner": owner, "attempt": attempt}
        ),
    ]
    for job in jobs:
        again = parse_message(type(job), job.to_body())
        assert again == job
        assert again.idempotency_key() == job.idempotency_key()
        assert len(job.to_body().encode()) < 1024
