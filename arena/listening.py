"""Telling the person who started the arena which address to open, once the server answers."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable

import httpx

# Startup builds lookup tables and opens the database: seconds, more on a busy machine.
WAIT_SECONDS = 300.0
POLL_SECONDS = 0.25


def address_to_open(host: str, port: int) -> str:
    """The URL a browser on this machine opens for a server bound to `host`:`port`."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"http://{host}:{port}/"  # a host name, e.g. localhost
    if address.is_unspecified:  # 0.0.0.0 or ::, every interface: loopback is one of them
        return f"http://127.0.0.1:{port}/" if address.version == 4 else f"http://[::1]:{port}/"
    return f"http://{address}:{port}/" if address.version == 4 else f"http://[{address}]:{port}/"


def ready_message(host: str, port: int) -> str:
    url = address_to_open(host, port)
    where = ""
    if host.strip("[]") in ("0.0.0.0", "::"):
        where = f" (listening on every interface of this machine, port {port})"
    return (
        f"The arena is ready: open {url} in a browser{where}. Owners register models at "
        f"{url}owner; the API is described at {url}docs. Ctrl+C stops it."
    )


def wait_until_answering(url: str, *, deadline: float, stop: threading.Event) -> bool:
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline and not stop.is_set():
            try:
                client.get(url + "healthz")
            except httpx.HTTPError:
                stop.wait(POLL_SECONDS)
                continue
            return True
    return False


def announce_when_listening(
    host: str, port: int, say: Callable[[str], None], *, wait_seconds: float = WAIT_SECONDS
) -> threading.Event:
    """Say `ready_message` once the server on `host`:`port` answers (uvicorn's own line names
    the bound address, which for 0.0.0.0 is no address to open). Setting the returned event
    stops the wait."""
    stop = threading.Event()
    url = address_to_open(host, port)

    def watch() -> None:
        if wait_until_answering(url, deadline=time.monotonic() + wait_seconds, stop=stop):
            say(ready_message(host, port))

    threading.Thread(target=watch, name="announce-address", daemon=True).start()
    return stop
