"""Which proxy carries a call to an endpoint: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY
from the operator's environment, read as curl, requests and httpx read them.

The variables are found by urllib's own reader (lower case wins over upper case; HTTP_PROXY is
ignored under CGI, where a client's "Proxy:" header would set it). NO_PROXY lists host names
(each also matches the names under it; a leading "." or "*." changes nothing), optionally
with ":port", IP addresses and networks in CIDR form (matching a host written as an address, as
curl and requests do: a name is not resolved to be compared), and "*" for every host. Only
http:// and https:// proxies exist here; a SOCKS proxy stops the arena at start.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from arena.errors import OutboundSetupError

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Proxy:
    """A forward proxy; `shown` names it without its credentials, for logs."""

    scheme: str
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_proxy(variable: str, url: str) -> Proxy:
    """The proxy a variable names; OutboundSetupError, naming the variable, if it names none."""
    written = url.strip()
    if "://" not in written:
        written = "http://" + written  # "proxy.corp:3128", as curl and requests read it
    try:
        parts = urlsplit(written)
        port = parts.port
    except ValueError as exc:
        raise OutboundSetupError(f"{variable}: not a proxy URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise OutboundSetupError(
            f"{variable}: the arena reaches endpoints through http:// or https:// proxies only, "
            f"not {scheme}://"
        )
    if not parts.hostname:
        raise OutboundSetupError(f"{variable}: the proxy URL names no host")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return Proxy(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], authorization)


_BRACKETED = re.compile(r"\[([^\]]*)\](/[0-9]+)?(?::([0-9]+))?\Z")
_IPV4_WITH_PORT = re.compile(r"([0-9./]+):([0-9]+)\Z")


def _network(entry: str) -> tuple[IPNetwork, int | None] | None:
    """An address or CIDR network, with the port it is limited to: "10.0.0.0/8", "192.0.2.7:8443",
    "2001:db8::/32", "[2001:db8::1]:8443"."""
    port = None
    bracketed = _BRACKETED.match(entry)
    with_port = _IPV4_WITH_PORT.match(entry)
    if bracketed is not None:
        entry = bracketed.group(1) + (bracketed.group(2) or "")
        port = int(bracketed.group(3)) if bracketed.group(3) else None
    elif with_port is not None:
        entry, port = with_port.group(1), int(with_port.group(2))
    try:
        return ipaddress.ip_network(entry, strict=False), port
    except ValueError:
        return None


@dataclass(frozen=True)
class ProxyRoutes:
    """The proxies for http:// and https:// endpoints, and the hosts that bypass them."""

    http: Proxy | None
    https: Proxy | None
    bypass_all: bool = False
    # (name, port or None for any): the name and every name under it
    no_proxy_names: tuple[tuple[str, int | None], ...] = ()
    no_proxy_networks: tuple[tuple[IPNetwork, int | None], ...] = ()

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypasses(host, port):
            return None
        return proxy

    def bypasses(self, host: str, port: int) -> bool:
        if self.bypass_all:
            return True
        host = host.strip("[]").rstrip(".").lower()
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(
                address in network and only_port in (None, port)
                for network, only_port in self.no_proxy_networks
            )
        return any(
            (host == name or host.endswith("." + name)) and only_port in (None, port)
            for name, only_port in self.no_proxy_names
        )


def proxy_routes_from_environment() -> ProxyRoutes | None:
    """The routes the environment asks for, or None when it names no proxy (then nothing on the
    way to an endpoint looks at proxies at all)."""
    found = urllib.request.getproxies_environment()
    fallback = found.get("all")
    http_url, https_url = found.get("http") or fallback, found.get("https") or fallback
    if not http_url and not https_url:
        return None
    http = parse_proxy("HTTP_PROXY", http_url) if http_url else None
    https = parse_proxy("HTTPS_PROXY", https_url) if https_url else None
    names: list[tuple[str, int | None]] = []
    networks: list[tuple[IPNetwork, int | None]] = []
    bypass_all = False
    for raw in (found.get("no") or "").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            bypass_all = True
            continue
        network = _network(entry)
        if network is not None:
            networks.append(network)
            continue
        name, colon, port = entry.rpartition(":")
        if not colon or not port.isdigit():
            name, port = entry, ""
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if name:
            names.append((name, int(port) if port else None))
    routes = ProxyRoutes(
        http=http,
        https=https,
        bypass_all=bypass_all,
        no_proxy_names=tuple(names),
        no_proxy_networks=tuple(networks),
    )
    log.info(
        "endpoints are called through proxies: http:// via %s, https:// via %s; NO_PROXY %r",
        http.shown if http else "none",
        https.shown if https else "none",
        found.get("no") or "",
    )
    return routes
