"""The SSRF guard on its own: URL forms, address classes, DNS answers, pinning. Attacks first."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arena.errors import EndpointRefused, EndpointUnresolvable, InvalidInput
from arena.registry.address_guard import (
    CheckedURL,
    address_problem,
    check_url,
    parse_endpoint_url,
    pinned_endpoint,
)
from arena.upstream.client import Endpoint
from tests.registry.async_run import run_async


class TableResolver:
    """A DNS stand-in answering from a table, each name's answers in turn (to play rebinding)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        answers = self.table.get(host)
        if not answers:
            raise OSError(-2, "Name or service not known")
        return answers.pop(0) if len(answers) > 1 else answers[0]


def check(
    url: str, *, allow_private: bool = False, resolver: TableResolver | None = None
) -> CheckedURL:
    resolve = resolver or TableResolver({})
    return run_async(check_url(url, allow_private=allow_private, resolve=resolve))


# ------------------------------------------------------------------ URL forms


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/v1",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "//example.com/v1",
        "example.com/v1",
        "http:///v1",
        "http://user:secret@example.com/v1",
        "http://example.com/v1?x=1",
        "http://example.com/v1#frag",
        "http://exa mple.com/v1",
        "http://example.com/v1\r\nHost: evil",
        "http://example.com:99999/v1",
        "http://[fe80::1%25eth0]/v1",
        "http://%31%32%37.0.0.1/v1",
        "http://example.com/" + "a" * 2048,
        # Classic filter bypasses: the parts a naive check reads as the host are not the host.
        "http://evil.com\\@127.0.0.1/",
        "http://127.0.0.1#@evil.com/",
        "http://evil.com@127.0.0.1/",
        "http://127.0.0.1:80\\@evil.com/",
        "http://127.0.0.1%2f@evil.com/",
        "http://evil.com%00.127.0.0.1/",
        "http://127\u30020\u30020\u30021/",
    ],
)
def test_malformed_urls_are_refused_naming_base_url(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_endpoint_url(url)
    assert refused.value.message.startswith("base_url: ")


@pytest.mark.parametrize(
    ("url", "meaning"),
    [
        ("http://2130706433/v1", "127.0.0.1"),  # decimal
        ("http://0x7f000001/v1", "127.0.0.1"),  # hex
        ("http://0x7f.1/v1", "127.0.0.1"),  # hex, two parts
        ("http://0177.0.0.1/v1", "127.0.0.1"),  # octal
        ("http://127.1/v1", "127.0.0.1"),  # short form
        ("http://127.0.0.01/v1", "127.0.0.1"),  # a leading zero is octal to inet_aton
        ("http://0/v1", "0.0.0.0"),
        ("http://2852039166/latest/meta-data", "169.254.169.254"),
        ("http://0xa9fea9fe/", "169.254.169.254"),
        ("http://134744072/v1", "8.8.8.8"),  # even a public address: one spelling only
    ],
)
def test_numeric_ipv4_forms_are_refused_and_explained(url: str, meaning: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_endpoint_url(url)
    message = refused.value.message
    assert message.startswith("base_url: ") and "non-standard form" in message
    if "0177" not in url and "127.0.0.01" not in url:  # httpx rejects these before we read them
        assert meaning in message


def test_numeric_forms_are_refused_even_when_private_endpoints_are_allowed() -> None:
    with pytest.raises(InvalidInput):
        check("http://2130706433:8000/v1", allow_private=True)


def test_dotted_quad_and_bracketed_ipv6_parse() -> None:
    assert parse_endpoint_url("https://203.0.113.7:8443/v1").host == "203.0.113.7"
    assert parse_endpoint_url("http://[2606:4700::1111]/v1").host == "2606:4700::1111"
    assert parse_endpoint_url("https://api.example.com/v1").host == "api.example.com"


# ------------------------------------------------------------------ address classes


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("169.254.0.1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:169.254.169.254", "IPv4-mapped"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("2002:7f00:1::", "transition"),
        ("64:ff9b::7f00:1", "transition"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "transition"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("2001:db8::1", "reserved"),
    ],
)
def test_internal_addresses_are_refused(address: str, problem: str) -> None:
    found = address_problem(ipaddress.ip_address(address), allow_private=False)
    assert found is not None and problem in found


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "203.0.114.1", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.0.0.5", True),
        ("192.168.0.10", True),
        ("fd12::1", True),
        # Allowing private endpoints never opens metadata, link-local and the like.
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("169.254.1.1", False),
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_what_allowing_private_endpoints_opens(address: str, allowed: bool) -> None:
    problem = address_problem(ipaddress.ip_address(address), allow_private=True)
    assert (problem is None) is allowed


@given(st.ip_addresses(v=4))
def test_every_ipv4_mapped_address_is_refused(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert address_problem(mapped, allow_private=True) is not None


@given(st.ip_addresses(v=4))
def test_only_global_ipv4_passes(address: ipaddress.IPv4Address) -> None:
    problem = address_problem(address, allow_private=False)
    if problem is None:
        assert address.is_global and not address.is_multicast


@given(st.ip_addresses(network="169.254.0.0/16"))
def test_link_local_v4_is_always_refused(address: ipaddress.IPv4Address) -> None:
    assert address_problem(address, allow_private=True) is not None


@given(st.ip_addresses(network="fe80::/10"))
def test_link_local_v6_is_always_refused(address: ipaddress.IPv6Address) -> None:
    assert address_problem(address, allow_private=True) is not None


# ------------------------------------------------------------------ names, DNS and pinning


@pytest.mark.parametrize(
    "url",
    [
        "http://metadata.google.internal/computeMetadata/v1",
        "http://METADATA.GOOGLE.INTERNAL./",
        "http://metadata/",
        "http://instance-data/latest",
    ],
)
def test_metadata_names_are_refused_before_any_lookup(url: str) -> None:
    resolver = TableResolver({})
    with pytest.raises(EndpointRefused) as refused:
        check(url, allow_private=True, resolver=resolver)
    assert "metadata" in refused.value.message
    assert resolver.asked == []


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = TableResolver({"internal.example.com": [["10.0.0.7"]]})
    with pytest.raises(EndpointRefused) as refused:
        check("https://internal.example.com/v1", resolver=resolver)
    message = refused.value.message
    assert message.startswith("base_url: ") and "10.0.0.7" in message and "private" in message
    assert "ARENA_ALLOW_PRIVATE_ENDPOINTS" in message


def test_every_address_of_a_name_is_checked_not_only_the_first() -> None:
    resolver = TableResolver({"mixed.example.com": [["203.0.113.10", "127.0.0.1"]]})
    with pytest.raises(EndpointRefused):
        check("https://mixed.example.com/v1", resolver=resolver)
    resolver = TableResolver({"mixed6.example.com": [["2606:4700::1111", "::ffff:10.0.0.1"]]})
    with pytest.raises(EndpointRefused):
        check("https://mixed6.example.com/v1", resolver=resolver)


def test_a_public_name_passes_and_is_pinned_to_its_first_address() -> None:
    resolver = TableResolver({"api.example.com": [["203.0.114.10", "203.0.114.11"]]})
    checked = check("https://api.example.com/v1", resolver=resolver)
    assert checked.connect_ip == "203.0.114.10"
    assert checked.addresses == ("203.0.114.10", "203.0.114.11")
    assert checked.port == 443


def test_dns_failure_is_its_own_error() -> None:
    with pytest.raises(EndpointUnresolvable) as failed:
        check("https://no-such-host.invalid/v1")
    assert failed.value.message.startswith("base_url: ") and "resolved" in failed.value.message


def test_the_real_resolver_is_used_by_default() -> None:
    with pytest.raises(EndpointRefused):
        run_async(check_url("http://localhost:8000/v1", allow_private=False))
    checked = run_async(check_url("http://localhost:8000/v1", allow_private=True))
    assert checked.connect_ip in ("127.0.0.1", "::1")


def test_rebinding_between_registration_and_battle_is_caught_at_call_time() -> None:
    """The name was public when checked; when the battle calls it, it points inside. The call-time
    check refuses it, and a passing check pins the connection to the address it checked."""
    resolver = TableResolver({"rebind.example.com": [["203.0.114.20"], ["127.0.0.1"]]})
    endpoint = Endpoint(base_url="https://rebind.example.com/v1", model="m")
    pinned = run_async(pinned_endpoint(endpoint, allow_private=False, resolve=resolver))
    assert pinned.connect_ip == "203.0.114.20" and pinned.base_url == endpoint.base_url
    with pytest.raises(EndpointRefused):
        run_async(pinned_endpoint(endpoint, allow_private=False, resolve=resolver))
    assert resolver.asked == ["rebind.example.com", "rebind.example.com"]


def test_literal_addresses_need_no_lookup() -> None:
    resolver = TableResolver({})
    checked = check("http://203.0.114.5:8080/v1", resolver=resolver)
    assert checked.connect_ip == "203.0.114.5" and resolver.asked == []
    with pytest.raises(EndpointRefused):
        check("http://[::ffff:127.0.0.1]:8080/v1", allow_private=True, resolver=resolver)
    with pytest.raises(EndpointRefused):
        check("http://[::1]:8080/v1", resolver=resolver)
