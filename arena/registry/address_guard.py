"""The SSRF guard: which endpoint URLs the arena may call, their addresses checked and pinned.

Every call to an owner's endpoint (the registration probe, the health probe, each battle turn)
resolves the host, checks every address it resolves to, and connects to the checked address
(`Endpoint.connect_ip`), so a name that re-resolves elsewhere between check and call (DNS
rebinding) changes nothing. The shared client follows no redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import urlsplit

import httpx

from arena.errors import EndpointRefused, EndpointUnresolvable, InvalidInput
from arena.upstream.client import (
    Answer,
    ChatMessage,
    Endpoint,
    Failed,
    Limits,
    UpstreamEvent,
    stream_chat,
)
from arena.upstream.http import UpstreamClient

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (as text), in the resolver's order
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH: Final = 2048
DNS_TIMEOUT_SECONDS: Final = 5.0

# Names and addresses of cloud instance-metadata services: refused even when private endpoints
# are allowed, since reaching one from the server hands out the machine's credentials.
METADATA_HOSTS: Final = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack...
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.169.123",  # AWS time service
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
# Private ranges an operator may allow (ARENA_ALLOW_PRIVATE_ENDPOINTS) for endpoints on its own
# network; link-local, metadata, multicast and the like stay refused whatever the setting.
_PRIVATE_NETWORKS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, also home to some metadata services
        "fc00::/7",  # unique-local
        "fec0::/10",  # the deprecated site-local range
    )
)
# IPv6 forms that carry an IPv4 address inside: each can smuggle a loopback or private address
# past a check that only looks at the IPv6 side, so none is accepted.
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")
_TRANSITION_NETWORKS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "2002::/16",  # 6to4
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local NAT64
        "2001::/32",  # Teredo
    )
)
# WHATWG URL rule: a host whose last label is a number is an IPv4 address (in any base).
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class CheckedURL:
    """A base URL that passed the guard, with every address its host resolved to."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def connect_ip(self) -> str:
        return self.addresses[0]


def _refuse(url: str, why: str) -> InvalidInput:
    return InvalidInput(f"base_url: {why} (got {url[:200]!r})")


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What inet_aton would make of `host` (decimal, octal with a leading 0, hex with 0x, 1-4
    parts), or None when it is not such a number."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if not _NUMERIC_LABEL.match(part):
            return None
        try:
            if part.startswith("0x"):
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part))
        except ValueError:  # an 8 or 9 in an octal part
            return None
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _check_numeric_host(url: str, host: str) -> None:
    if ":" in host:
        return
    labels = host.rstrip(".").split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return
    try:
        canonical = str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        canonical = False
    if not canonical:
        meaning = _legacy_ipv4(host.rstrip("."))
        means = f", which means {meaning}" if meaning else ""
        raise _refuse(
            url,
            f"writes an IPv4 address in a non-standard form ({host!r}{means}); "
            "write addresses as four decimal numbers such as 203.0.113.7",
        )


def parse_endpoint_url(url: str) -> httpx.URL:
    """The URL if its form is acceptable for an endpoint; InvalidInput (field base_url) if not."""
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(url, f"is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(url):
        raise _refuse(url, "contains spaces or control characters")
    try:
        split_host = (urlsplit(url).hostname or "").lower()
    except ValueError as exc:
        raise _refuse(url, f"is not a valid URL ({exc})") from None
    # Before httpx, which rejects some numeric forms with a less helpful message.
    _check_numeric_host(url, split_host)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise _refuse(url, f"is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise _refuse(url, "must start with http:// or https://")
    if not parsed.host:
        raise _refuse(url, "has no host name")
    if parsed.userinfo:
        raise _refuse(url, "must not contain a user name or password; send the key as api_key")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise _refuse(url, "must not have a query (?...) or a fragment (#...)")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise _refuse(url, "has a port outside 1-65535")
    host = parsed.host.lower()
    if "%" in host:
        raise _refuse(url, "has a percent-encoded host or an IPv6 zone id")
    # Two parsers that disagree on the host are how SSRF filters get bypassed: refuse outright.
    if host != split_host:
        raise _refuse(url, "is ambiguous: its host reads differently to different URL parsers")
    _check_numeric_host(url, host)
    return parsed


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why the arena must not connect to `address`, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if address in _IPV4_COMPATIBLE and not (address.is_loopback or address.is_unspecified):
            return "an IPv4-compatible IPv6 address"
        if any(address in network for network in _TRANSITION_NETWORKS):
            return "an IPv6 transition address that embeds an IPv4 address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_loopback:
        return None if allow_private else "a loopback address"
    if any(address in network for network in _PRIVATE_NETWORKS):
        return None if allow_private else "a private address"
    if address.is_global:
        return None
    return "a reserved or non-routable address"


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_url(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolve
) -> CheckedURL:
    """Parse, resolve and check: every address the host resolves to must be acceptable.

    Raises InvalidInput for a malformed URL, EndpointUnresolvable when the name does not
    resolve, EndpointRefused when any address is one the arena may not call."""
    parsed = parse_endpoint_url(url)
    host = parsed.host.lower()
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if host.rstrip(".") in METADATA_HOSTS:
        raise EndpointRefused(
            f"base_url: {host!r} is a cloud metadata service, which endpoints may not be"
        )
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            async with asyncio.timeout(DNS_TIMEOUT_SECONDS):
                addresses = await resolve(host, port)
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise EndpointUnresolvable(
                f"base_url: the host name {host!r} could not be resolved (DNS: {reason}); "
                "check the spelling, or use an address"
            ) from None
    unique = list(dict.fromkeys(addresses))
    if not unique:
        raise EndpointUnresolvable(f"base_url: the host name {host!r} resolves to no address")
    for text in unique:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise EndpointUnresolvable(
                f"base_url: {host!r} resolved to {text!r}, which is not an address"
            ) from None
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            hint = (
                ""
                if allow_private or problem not in ("a loopback address", "a private address")
                else "; the operator can allow private endpoints (ARENA_ALLOW_PRIVATE_ENDPOINTS)"
            )
            shown = host if host == text else f"{host!r} resolves to {text}, which"
            raise EndpointRefused(
                f"base_url: {shown} is {problem}; endpoints must be reachable on the public "
                f"internet{hint}"
            )
    return CheckedURL(url=url, host=host, port=port, addresses=tuple(unique))


async def pinned_endpoint(
    endpoint: Endpoint, *, allow_private: bool, resolve: Resolver = system_resolve
) -> Endpoint:
    """The endpoint with its connection pinned to a freshly checked address.

    Called right before every upstream call (battles included), so a host that resolved to a
    public address at registration and to an internal one now is refused now."""
    checked = await check_url(endpoint.base_url, allow_private=allow_private, resolve=resolve)
    return replace(endpoint, connect_ip=checked.connect_ip)


ChatCall = Callable[
    [UpstreamClient, Endpoint, list[ChatMessage], Limits, Callable[[UpstreamEvent], None]],
    Awaitable[Answer],
]


# How long a battle reuses an address check of the same base URL: a host that turns to an
# internal address is refused within this time, while a busy endpoint is not resolved and
# checked for every call. The connection still goes to the address that was checked.
RECHECK_SECONDS: Final = 5.0
_CHECKS_KEPT: Final = 4096


def guarded_chat(
    *,
    allow_private: bool,
    resolve: Resolver = system_resolve,
    recheck_seconds: float = RECHECK_SECONDS,
) -> ChatCall:
    """`stream_chat` behind the guard, for the battle relay: a refused or unresolvable endpoint
    ends that side as a failed answer (data, like any upstream failure), never as an exception."""
    # base URL -> (loop time until which the check holds, the checked address)
    checked: dict[str, tuple[float, str]] = {}

    def chat(
        client: UpstreamClient,
        endpoint: Endpoint,
        messages: list[ChatMessage],
        limits: Limits,
        emit: Callable[[UpstreamEvent], None],
    ) -> Awaitable[Answer]:
        def call(pinned: Endpoint) -> Awaitable[Answer]:
            return stream_chat(client, pinned, messages, limits, emit)

        # A checked address still valid: the call starts now, as stream_chat's do.
        known = checked.get(endpoint.base_url)
        if known is not None and known[0] > asyncio.get_running_loop().time():
            return call(replace(endpoint, connect_ip=known[1]))
        return check_then_call(endpoint, call, emit)

    async def check_then_call(
        endpoint: Endpoint,
        call: Callable[[Endpoint], Awaitable[Answer]],
        emit: Callable[[UpstreamEvent], None],
    ) -> Answer:
        try:
            pinned = await pinned_endpoint(endpoint, allow_private=allow_private, resolve=resolve)
        except (InvalidInput, EndpointRefused, EndpointUnresolvable) as exc:
            checked.pop(endpoint.base_url, None)
            log.warning("endpoint of model %s not called: %s", endpoint.model, exc.message)
            failure = Failed("connect", f"refused by the address guard: {exc.message}")
            emit(failure)
            return Answer(failure=failure)
        if recheck_seconds > 0 and pinned.connect_ip is not None:
            if len(checked) >= _CHECKS_KEPT:
                checked.clear()
            now = asyncio.get_running_loop().time()
            checked[endpoint.base_url] = (now + recheck_seconds, pinned.connect_ip)
        return await call(pinned)

    return chat
