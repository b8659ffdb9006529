"""The upstream client through forward proxies and with the operator's CA bundle, against real
loopback servers: a TLS fake upstream signed by a test CA, a CONNECT proxy that keeps what it
was asked, and proxies that misbehave."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from arena.errors import OutboundSetupError
from arena.upstream.client import Answer, Endpoint, Limits, stream_chat
from arena.upstream.http import MAX_HEAD_BYTES, UpstreamClient
from arena.upstream.proxies import Proxy, ProxyRoutes, proxy_routes_from_environment
from arena.upstream.trust import trusted_context
from tests.fake_upstream import FakeUpstream, answer_for
from tests.forward_proxy import Authority, ForwardProxy

_LOOPS: dict[str, Callable[[Coroutine[Any, Any, Answer]], Answer]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


def _routes(proxy: ForwardProxy, *, credentials: str | None = None) -> ProxyRoutes:
    """What HTTPS_PROXY and HTTP_PROXY naming `proxy` read as."""
    routes = _environment_routes(
        {"HTTPS_PROXY": proxy.url_with(credentials) if credentials else proxy.url}
    )
    assert routes is not None and routes.https is not None
    return ProxyRoutes(http=routes.https, https=routes.https)


def _environment_routes(values: dict[str, str]) -> ProxyRoutes | None:
    with pytest.MonkeyPatch.context() as env:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"):
            env.delenv(name, raising=False)
            env.delenv(name.lower(), raising=False)
        for name, value in values.items():
            env.setenv(name, value)
        return proxy_routes_from_environment()


def _call(
    upstream: FakeUpstream,
    *,
    tls: ssl.SSLContext | None,
    proxies: ProxyRoutes | None = None,
    resolves_names: bool = False,
    model: str = "normal",
    loop: str = "asyncio",
    connect_timeout: float = 2.0,
) -> Answer:
    # Pinned as the address guard pins it: localhost's checked address is 127.0.0.1.
    endpoint = Endpoint(upstream.base_url, model, connect_ip="127.0.0.1")

    async def go() -> Answer:
        client = UpstreamClient(tls=tls, proxies=proxies, proxy_resolves_names=resolves_names)
        async with client:
            return await stream_chat(
                client,
                endpoint,
                [{"role": "user", "content": "proxied?"}],
                Limits(connect=connect_timeout, first_token=5, idle=5, total=10),
                lambda _event: None,
            )

    return _LOOPS[loop](go())


# ---------------------------------------------------------------- CA bundle


def test_the_test_ca_bundle_makes_the_tls_upstream_trusted(
    tls_upstream: FakeUpstream, test_authority: Authority
) -> None:
    answer = _call(tls_upstream, tls=trusted_context(test_authority.bundle))
    assert answer.ok, answer.failure
    assert answer.text == answer_for("proxied?")


def test_public_authorities_do_not_trust_it_and_say_why(tls_upstream: FakeUpstream) -> None:
    answer = _call(tls_upstream, tls=trusted_context(None))
    assert answer.failure is not None
    assert answer.failure.kind == "certificate"
    assert answer.failure.detail.startswith("certificate not trusted: ")
    assert "issuer" in answer.failure.detail  # OpenSSL: unable to get local issuer certificate


def test_ssl_cert_file_is_read_when_no_bundle_is_set(
    tls_upstream: FakeUpstream, test_authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(test_authority.bundle))
    assert _call(tls_upstream, tls=trusted_context(None)).ok
    # The arena's own setting comes first.
    elsewhere = Path(__file__)  # not a CA file: the setting is read, and refused
    with pytest.raises(OutboundSetupError, match="ARENA_CA_BUNDLE"):
        trusted_context(elsewhere)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "is not a file of certificates"),
        (b"", "could not be read as PEM certificates"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", "PEM"),
        (b"just some text\n", "could not be read as PEM certificates"),
    ],
)
def test_an_unusable_bundle_is_refused_at_start_naming_the_variable(
    tmp_path: Path, content: bytes | None, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(OutboundSetupError, match=says) as refused:
        trusted_context(bundle)
    assert str(bundle) in refused.value.message
    assert refused.value.message.startswith("ARENA_CA_BUNDLE: ")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with pytest.raises(OutboundSetupError, match="SSL_CERT_FILE"):
        trusted_context(None)


# ---------------------------------------------------------------- through a proxy


@pytest.mark.parametrize("loop", sorted(_LOOPS))
def test_an_https_endpoint_is_reached_through_a_connect_tunnel_to_the_checked_address(
    tls_upstream: FakeUpstream,
    test_authority: Authority,
    forward_proxy: Callable[..., ForwardProxy],
    loop: str,
) -> None:
    proxy = forward_proxy()
    answer = _call(
        tls_upstream, tls=test_authority.client_context(), proxies=_routes(proxy), loop=loop
    )
    assert answer.ok, answer.failure
    assert answer.text == answer_for("proxied?")
    # The pinned address, not the name: the proxy has nothing to resolve.
    assert proxy.connects == [f"127.0.0.1:{tls_upstream.port}"]
    # Inside the tunnel, Host still names the endpoint (and TLS checked the name).
    assert tls_upstream.received[-1].headers["host"] == f"localhost:{tls_upstream.port}"


@pytest.mark.parametrize("loop", sorted(_LOOPS))
def test_an_https_proxy_carries_tls_inside_tls(
    tls_upstream: FakeUpstream,
    fake_upstream: FakeUpstream,
    test_authority: Authority,
    forward_proxy: Callable[..., ForwardProxy],
    loop: str,
) -> None:
    proxy = forward_proxy(tls=test_authority.server_context())
    trusted = test_authority.client_context()
    answer = _call(tls_upstream, tls=trusted, proxies=_routes(proxy), loop=loop)
    assert answer.ok, answer.failure
    assert proxy.connects == [f"127.0.0.1:{tls_upstream.port}"]
    assert _call(fake_upstream, tls=trusted, proxies=_routes(proxy), loop=loop).ok
    assert proxy.forwarded == [f"http://127.0.0.1:{fake_upstream.port}/v1/chat/completions"]


def test_an_https_proxy_with_an_untrusted_certificate_is_no_endpoint_certificate_failure(
    tls_upstream: FakeUpstream,
    test_authority: Authority,
    forward_proxy: Callable[..., ForwardProxy],
) -> None:
    proxy = forward_proxy(tls=test_authority.server_context())
    answer = _call(tls_upstream, tls=trusted_context(None), proxies=_routes(proxy))
    assert answer.failure is not None and answer.failure.kind == "connect", answer.failure
    assert "the proxy's own certificate is not trusted" in answer.failure.detail
    assert proxy.connects == []


def test_the_proxy_is_asked_for_the_name_when_it_resolves_names(
    tls_upstream: FakeUpstream,
    test_authority: Authority,
    forward_proxy: Callable[..., ForwardProxy],
) -> None:
    proxy = forward_proxy()
    answer = _call(
        tls_upstream,
        tls=test_authority.client_context(),
        proxies=_routes(proxy),
        resolves_names=True,
    )
    assert answer.ok, answer.failure
    assert proxy.connects == [f"localhost:{tls_upstream.port}"]


def test_proxy_credentials_are_sent_to_the_proxy(
    tls_upstream: FakeUpstream,
    fake_upstream: FakeUpstream,
    test_authority: Authority,
    forward_proxy: Callable[..., ForwardProxy],
) -> None:
    proxy = forward_proxy(credentials="ada:s3cr:t@")
    routes = _routes(proxy, credentials="ada:s3cr%3At%40")  # percent-encoded in the URL
    assert _call(tls_upstream, tls=test_authority.client_context(), proxies=routes).ok
    assert proxy.connects == [f"127.0.0.1:{tls_upstream.port}"]
    before = len(fake_upstream.received)
    assert _call(fake_upstream, tls=None, proxies=routes).ok
    assert proxy.forwarded == [f"http://127.0.0.1:{fake_upstream.port}/v1/chat/completions"]
    # What reached the endpoint carried no proxy credentials (this proxy strips them).
    assert all("proxy-authorization" not in r.headers for r in fake_upstream.received[before:])


def test_an_http_endpoint_goes_through_the_proxy_in_absolute_form(
    fake_upstream: FakeUpstream, forward_proxy: Callable[..., ForwardProxy]
) -> None:
    proxy = forward_proxy()
    answer = _call(fake_upstream, tls=None, proxies=_routes(proxy))
    assert answer.ok, answer.failure
    assert proxy.forwarded == [f"http://127.0.0.1:{fake_upstream.port}/v1/chat/completions"]
    assert proxy.connects == []


def test_a_wrong_certificate_through_the_tunnel_is_still_not_trusted(
    tls_upstream: FakeUpstream, forward_proxy: Callable[..., ForwardProxy]
) -> None:
    proxy = forward_proxy()
    answer = _call(tls_upstream, tls=trusted_context(None), proxies=_routes(proxy))
    assert answer.failure is not None and answer.failure.kind == "certificate", answer.failure
    assert proxy.connects == [f"127.0.0.1:{tls_upstream.port}"]


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("407", "the proxy asks for credentials (HTTP 407"),
        ("garbage", "the proxy did not answer CONNECT in HTTP ('SSH-2.0-OpenSSH_9.6')"),
        ("endless-head", f"the proxy's answer to CONNECT exceeded {MAX_HEAD_BYTES} bytes"),
        ("early-bytes", "the proxy sent bytes after its answer to CONNECT"),
        ("silent", "connect timeout after 0.5s (through the proxy"),
    ],
)
def test_a_misbehaving_proxy_fails_the_call_cleanly(
    tls_upstream: FakeUpstream,
    test_authority: Authority,
    forward_proxy: Callable[..., ForwardProxy],
    mode: str,
    says: str,
) -> None:
    proxy = forward_proxy(mode)
    before = len(tls_upstream.received)
    answer = _call(
        tls_upstream,
        tls=test_authority.client_context(),
        proxies=_routes(proxy),
        connect_timeout=0.5,
    )
    assert answer.failure is not None
    assert answer.failure.kind == ("timeout" if mode == "silent" else "connect")
    assert says in answer.failure.detail, answer.failure.detail
    assert len(tls_upstream.received) == before  # nothing reached the endpoint


def test_an_http_request_the_proxy_wants_credentials_for_is_no_answer_of_the_endpoint(
    fake_upstream: FakeUpstream, forward_proxy: Callable[..., ForwardProxy]
) -> None:
    proxy = forward_proxy(credentials="ada:secret")
    before = len(fake_upstream.received)
    answer = _call(fake_upstream, tls=None, proxies=_routes(proxy))
    assert answer.failure is not None and answer.failure.kind == "connect", answer.failure
    assert "the proxy asks for credentials (HTTP 407)" in answer.failure.detail
    assert len(fake_upstream.received) == before


def test_a_refused_proxy_is_an_unreachable_endpoint(
    tls_upstream: FakeUpstream, test_authority: Authority
) -> None:
    nowhere = ProxyRoutes(http=None, https=Proxy("http", "127.0.0.1", 9))  # discard: closed
    answer = _call(tls_upstream, tls=test_authority.client_context(), proxies=nowhere)
    assert answer.failure is not None and answer.failure.kind == "connect"
    assert "could not connect through the proxy: ConnectionRefusedError" in answer.failure.detail


# ---------------------------------------------------------------- which calls take a proxy


def test_no_proxy_variable_means_no_proxy_at_all() -> None:
    assert _environment_routes({}) is None
    assert _environment_routes({"NO_PROXY": "localhost"}) is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("localhost", "localhost", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "example.com.", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "api.example.com", 443, True),
        ("*.example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),  # a name is not resolved to be compared
        ("192.0.2.7", "192.0.2.7", 443, True),
        ("192.0.2.7", "192.0.2.8", 443, False),
        ("::1", "::1", 443, True),
        ("[::1]:8443", "::1", 8443, True),
        ("[::1]:8443", "::1", 443, False),
        ("192.0.2.7:8443", "192.0.2.7", 443, False),
        ("192.0.2.7:8443", "192.0.2.7", 8443, True),
        ("2001:db8::/32", "2001:db8::5", 443, True),
        ("[2001:db8::]/32", "2001:db8::5", 443, True),
        ("fd00::/8", "2001:db8::5", 443, False),
        (" a.test , b.test ", "x.b.test", 443, True),
        ("*", "anything.example", 443, True),
        ("a.test,*", "anything.example", 443, True),
        ("", "api.example.com", 443, False),
    ],
)
def test_no_proxy_matches_names_suffixes_ports_addresses_and_networks(
    no_proxy: str, host: str, port: int, bypassed: bool
) -> None:
    routes = _environment_routes({"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": no_proxy})
    assert routes is not None
    assert (routes.proxy_for("https", host, port) is None) is bypassed


def test_lower_case_wins_all_proxy_fills_in_and_cgi_drops_http_proxy() -> None:
    routes = _environment_routes(
        {"HTTPS_PROXY": "http://upper.test:1", "https_proxy": "http://lower.test:2"}
    )
    assert routes is not None and routes.https == Proxy("http", "lower.test", 2)
    assert routes.http is None
    routes = _environment_routes({"ALL_PROXY": "proxy.test:3128"})
    assert routes is not None
    assert routes.http == routes.https == Proxy("http", "proxy.test", 3128)
    routes = _environment_routes({"HTTP_PROXY": "http://a.test:1", "REQUEST_METHOD": "GET"})
    assert routes is None  # a CGI client's "Proxy:" header would have set it


def test_credentials_become_basic_authorization_and_stay_out_of_logs() -> None:
    routes = _environment_routes({"HTTPS_PROXY": "http://ada:p%40ss@proxy.test"})
    assert routes is not None and routes.https is not None
    assert routes.https.authorization == "Basic YWRhOnBAc3M="  # base64 of ada:p@ss
    assert routes.https.port == 80
    assert "p@ss" not in repr(routes) and "YWRh" not in repr(routes)
    assert routes.https.shown == "http://proxy.test:80"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("socks5://proxy.test:1080", "http:// or https:// proxies only, not socks5://"),
        ("http://proxy.test:notaport", "not a proxy URL"),
        ("http://:3128", "names no host"),
    ],
)
def test_an_unusable_proxy_variable_stops_the_arena_naming_it(value: str, says: str) -> None:
    with pytest.raises(OutboundSetupError, match=says) as refused:
        _environment_routes({"HTTPS_PROXY": value})
    assert refused.value.message.startswith("HTTPS_PROXY: ")


def test_ssl_cert_dir_is_read_after_ssl_cert_file(
    tmp_path: Path, test_authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "absent"))
    with pytest.raises(OutboundSetupError, match="SSL_CERT_DIR: .* is not a folder"):
        trusted_context(None)
    monkeypatch.setenv("SSL_CERT_FILE", str(test_authority.bundle))
    assert trusted_context(None).cert_store_stats()["x509_ca"] == 1
