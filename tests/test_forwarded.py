"""Client addresses: the peer, or the one ``proxy_header`` family that trusted proxies set."""

from __future__ import annotations

from typing import Any

import pytest

from edgefilter import ConfigError, EdgeFilter, SiteConfig
from edgefilter.middleware import EdgeFilterMiddleware, forwarded_hops, hop_address

from .conftest import CHROME
from .test_middleware import US, RecordingApp, hit, run

pytestmark = pytest.mark.adversarial

PROXY = "127.0.0.2"
CLIENT = "198.51.100.7"
SITE = SiteConfig(site_id=1, block_bots=False, excluded_ips=("203.0.113.0/24",))


def client_ip(
    headers: list[tuple[str, str]],
    *,
    peer: str = PROXY,
    proxy_header: Any = "x-forwarded-for",
    trusted: list[str] | None = None,
) -> str | None:
    """The client address the middleware decides a hit with ``headers`` from ``peer`` had."""
    app = RecordingApp()
    asgi = EdgeFilterMiddleware(
        app,
        edge_filter=EdgeFilter({"1": SITE}),
        trusted_proxies=[PROXY, "10.9.0.0/16", "2001:db8:ffff::/48"]
        if trusted is None
        else trusted,
        proxy_header=proxy_header,
        mode="annotate",
    )
    run(asgi, hit(), peer=peer, headers=[("User-Agent", CHROME), *headers])
    address: str | None = app.calls[0]["scope"]["state"]["edgefilter"].client_ip
    return address


@pytest.mark.parametrize(
    ("peer", "value", "expected"),
    [
        # an untrusted peer is the client, whatever it forwards
        (CLIENT, US, CLIENT),
        ("127.0.0.1", US, "127.0.0.1"),
        ("::1", US, "::1"),
        ("10.8.0.1", US, "10.8.0.1"),
        # a trusted peer: the right-most untrusted hop
        (PROXY, US, US),
        (PROXY, f"6.6.6.6, {US}", US),
        (PROXY, f"6.6.6.6, {US}, 10.9.0.1, 10.9.0.2", US),
        (PROXY, f"{US},10.9.0.1", US),
        # every hop trusted: the left-most one
        (PROXY, "10.9.0.1, 10.9.0.2", "10.9.0.1"),
        # ports and brackets
        (PROXY, f"{US}:443", US),
        (PROXY, "[2001:db8::1]:443", "2001:db8::1"),
        (PROXY, "[2001:db8::1]", "2001:db8::1"),
        # IPv6 and IPv4-mapped
        (PROXY, "2001:db8::1", "2001:db8::1"),
        (PROXY, "2001:db8::1, 2001:db8:ffff::1", "2001:db8::1"),
        ("::ffff:127.0.0.2", US, US),
        ("2001:db8:ffff::9", US, US),
        # an unreadable right-most untrusted hop: unreadable, never an earlier hop
        (PROXY, f"{US}, unknown", None),
        (PROXY, f"{US}, ", None),
        (PROXY, "", None),
        (PROXY, f"{US}, garbage, 10.9.0.1", None),
        (PROXY, f"{US}, _hidden", None),
        (PROXY, f"{US}, 999.1.1.1", None),
        (PROXY, f"{US}, [2001:db8::1", None),
        (PROXY, f"{US}, [2001:db8::1]x", None),
        (PROXY, f'{US}, "{US}"', None),
        (PROXY, f"{US}, fe80::1%eth0", None),
        (PROXY, f"{US},, 10.9.0.1", None),
    ],
)
def test_x_forwarded_for(peer: str, value: str, expected: str | None) -> None:
    """X-Forwarded-For from a trusted peer, read right to left."""
    assert client_ip([("X-Forwarded-For", value)], peer=peer) == expected


def test_x_forwarded_for_repeated_headers_read_in_order() -> None:
    """Two X-Forwarded-For lines are one list, in order: the last line's hop is nearest."""
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", f"{US}, 10.9.0.1")]
    assert client_ip(headers) == US


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # one element, IPv4, IPv6 bracketed with a port, quoted or not
        (f"for={US}", US),
        (f'for="{US}"', US),
        (f'for="{US}:8080"', US),
        ('for="[2001:db8:cafe::17]:4711";proto=https', "2001:db8:cafe::17"),
        ('for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
        (f"For={US};Proto=http;By=10.9.0.1", US),
        (f"proto=https; for={US}", US),
        # the right-most untrusted element
        (f"for=6.6.6.6, for={US}", US),
        (f"for={US}, for=10.9.0.1", US),
        (f"for={US}, for=10.9.0.1;proto=https, for=10.9.0.2", US),
        # every element trusted: the left-most
        ("for=10.9.0.1, for=10.9.0.2", "10.9.0.1"),
        # unreadable right-most untrusted element: unreadable, never an earlier one
        (f"for={US}, for=unknown", None),
        (f'for={US}, for="_gazonk"', None),
        (f"for={US}, for=", None),
        (f"for={US}, proto=https", None),
        (f"for={US}, for=6.6.6.6;for=7.7.7.7", None),
        (f"for={US}, ", None),
        (f"for={US}, for=[2001:db8::1", None),
        (f"for={US}, for=2001:db8::1]", None),
        (f'for={US}, for="', None),
        ("", None),
        ("garbage", None),
    ],
)
def test_forwarded(value: str, expected: str | None) -> None:
    """RFC 7239 Forwarded from a trusted peer, when it is the chosen family."""
    assert client_ip([("Forwarded", value)], proxy_header="forwarded") == expected


@pytest.mark.parametrize("proxy_header", ["x-real-ip", "cf-connecting-ip"])
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # one address, as the proxy set it
        ([US], US),
        ([f" {US} "], US),
        (["2001:db8::1"], "2001:db8::1"),
        (["[2001:db8::1]:443"], "2001:db8::1"),
        (["10.9.0.1"], "10.9.0.1"),
        # not one readable address
        ([f"{US}, 6.6.6.6"], None),
        ([f"6.6.6.6,{US}"], None),
        ([US, "6.6.6.6"], None),
        (["unknown"], None),
        ([""], None),
    ],
)
def test_single_address_headers(proxy_header: str, values: list[str], expected: str | None) -> None:
    """X-Real-IP and CF-Connecting-IP hold one address; a list is unreadable."""
    headers = [(proxy_header, value) for value in values]
    assert client_ip(headers, proxy_header=proxy_header) == expected


@pytest.mark.parametrize(
    ("proxy_header", "headers", "expected"),
    [
        # only the chosen family is read: no fallback to another, in either direction
        ("x-forwarded-for", [("Forwarded", f"for={US}")], PROXY),
        ("x-forwarded-for", [("X-Real-IP", US), ("CF-Connecting-IP", US)], PROXY),
        ("x-forwarded-for", [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", US)], US),
        ("forwarded", [("X-Forwarded-For", US)], PROXY),
        ("forwarded", [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", f"for={US}")], US),
        ("x-real-ip", [("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", US)], US),
        ("x-real-ip", [("CF-Connecting-IP", US)], PROXY),
        ("cf-connecting-ip", [("X-Real-IP", "6.6.6.6"), ("CF-Connecting-IP", US)], US),
        ("cf-connecting-ip", [("X-Forwarded-For", US)], PROXY),
    ],
)
def test_only_the_chosen_family_is_read(
    proxy_header: str, headers: list[tuple[str, str]], expected: str
) -> None:
    """A client-sent header of another family never chooses the address."""
    assert client_ip(headers, proxy_header=proxy_header) == expected


@pytest.mark.parametrize("proxy_header", ["x-forwarded-for", "forwarded", "x-real-ip"])
def test_untrusted_peers_are_never_believed(proxy_header: str) -> None:
    """From a peer that is not a trusted proxy no family is read."""
    value = f"for={US}" if proxy_header == "forwarded" else US
    assert client_ip([(proxy_header, value)], peer=CLIENT, proxy_header=proxy_header) == CLIENT


def test_trust_everyone_reads_the_left_most_hop() -> None:
    """With ``*`` every hop is trusted, so the left-most one is the client."""
    assert client_ip([("X-Forwarded-For", f"{US}, 6.6.6.6")], peer=CLIENT, trusted=["*"]) == US


def test_an_unreadable_client_is_dropped_for_a_site_with_ip_rules() -> None:
    """An unreadable hop is invalid_ip for a site with IP rules: dropped, never tracked."""
    asgi = EdgeFilterMiddleware(
        RecordingApp(), edge_filter=EdgeFilter({"1": SITE}), trusted_proxies=[PROXY]
    )
    headers = [("User-Agent", CHROME), ("X-Forwarded-For", f"{US}, unknown")]
    status, body = run(asgi, hit(), peer=PROXY, headers=headers)
    assert (status, body) == (200, b'{"success":true,"message":"Event not tracked - IP excluded"}')


@pytest.mark.parametrize("proxy_header", ["X-Forwarded-For", "x-forwarded-host", "", "true"])
def test_unknown_proxy_header_is_a_config_error(proxy_header: str) -> None:
    """proxy_header must name one of the four families, spelled lower case."""
    with pytest.raises(ConfigError, match="proxy_header"):
        EdgeFilterMiddleware(
            RecordingApp(),
            edge_filter=EdgeFilter({}),
            proxy_header=proxy_header,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("value", "hops"),
    [
        ("for=1.2.3.4", ["1.2.3.4"]),
        ('for="[::1]:80", for=unknown', ["[::1]:80", "unknown"]),
        ("by=1.2.3.4", [None]),
        ("for=1;for=2", [None]),
    ],
)
def test_forwarded_hops(value: str, hops: list[str | None]) -> None:
    """Each element's one for= value, unquoted; None without exactly one."""
    assert forwarded_hops(value) == hops


@pytest.mark.parametrize(
    ("hop", "address"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4:80 ", "1.2.3.4"),
        ("[::1]:80", "::1"),
        ("::1", "::1"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("unknown", None),
        ("1.2.3", None),
        ("[::1", None),
        ("", None),
    ],
)
def test_hop_address(hop: str, address: str | None) -> None:
    """One hop's address, port and brackets stripped; None when it is not one."""
    assert hop_address(hop) == address
