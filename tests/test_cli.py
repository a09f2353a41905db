"""The command line's servers: one uvicorn config, proxy headers off, on a live stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from edgefilter import EdgeFilter, SiteConfig
from edgefilter._serving import serve_in_thread, uvicorn_config
from edgefilter.cli import build_proxy, main, parse_args
from edgefilter.middleware import EdgeFilterMiddleware

from .conftest import ASN_DB, CHROME, LiveApi

US = "216.160.83.56"
DROPPED = "Event not tracked - IP excluded"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[uvicorn.Config]]:
    """The configs uvicorn servers are run with; none actually serves."""
    configs: list[uvicorn.Config] = []

    def run(self: uvicorn.Server, sockets: Any = None) -> None:
        configs.append(self.config)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    yield configs
    for config in configs:
        if isinstance(config.app, EdgeFilterMiddleware):
            close_proxy(config.app)


def close_proxy(proxy: EdgeFilterMiddleware) -> None:
    """Stop a CLI proxy's rules cache and close its Sites API client."""
    cache: Any = proxy.edge_filter.source
    cache.close()
    cache.client.close()


def loaded_app(config: uvicorn.Config) -> Any:
    """What uvicorn would call: the app after its own middleware."""
    config.load()
    return config.loaded_app


@pytest.mark.parametrize("options", [{}, {"proxy_headers": True}, {"forwarded_allow_ips": "*"}])
def test_the_one_config_turns_proxy_headers_off(options: dict[str, Any]) -> None:
    """uvicorn_config never wraps the app in uvicorn's ProxyHeadersMiddleware."""
    app = Starlette()
    config = uvicorn_config(app, **options)
    assert config.proxy_headers is False
    assert not isinstance(loaded_app(config), ProxyHeadersMiddleware)


def test_serve_api_runs_the_one_config(captured: list[uvicorn.Config], tmp_path: Path) -> None:
    """``edgefilter serve-api`` serves through uvicorn_config: proxy headers off."""
    assert main(["serve-api", "--db", f"sqlite:///{tmp_path / 'sites.db'}", "--port", "8123"]) == 1
    (config,) = captured
    assert (config.proxy_headers, config.port) == (False, 8123)
    assert not isinstance(loaded_app(config), ProxyHeadersMiddleware)


def test_proxy_runs_the_one_config(captured: list[uvicorn.Config]) -> None:
    """``edgefilter proxy`` serves through uvicorn_config: proxy headers off."""
    argv = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", "http://127.0.0.1:9"]
    assert main([*argv, "--key", "k", "--proxy-header", "x-real-ip"]) == 1
    (config,) = captured
    assert config.proxy_headers is False
    assert isinstance(loaded_app(config), EdgeFilterMiddleware)
    assert config.app.proxy_header == "x-real-ip"


def test_proxy_with_a_bad_trusted_proxy_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --trusted-proxy is a one-line error naming it, exit status 2, no traceback."""
    argv = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", "http://127.0.0.1:9"]
    assert main([*argv, "--key", "k", "--trusted-proxy", "10.0.0.0/33"]) == 2
    assert "'10.0.0.0/33'" in capsys.readouterr().err


async def echo(request: Request) -> JSONResponse:
    """A track endpoint that answers with the client address it was given."""
    return JSONResponse({"success": True, "client": request.client and request.client.host})


def test_loopback_forwarding_is_not_believed_by_the_served_stack() -> None:
    """An untrusted client on 127.0.0.1 sending X-Forwarded-For keeps its own address."""
    site = SiteConfig(site_id=1, block_bots=False, excluded_ips=("127.0.0.1",))
    app = EdgeFilterMiddleware(
        Starlette(routes=[Route("/api/track", echo, methods=["POST"])]),
        edge_filter=EdgeFilter({"1": site}),
    )
    body = b'{"type": "pageview", "site_id": "1"}'
    with serve_in_thread(app) as url:
        transport = httpx.HTTPTransport(local_address="127.0.0.1")
        with httpx.Client(transport=transport, base_url=url) as client:
            spoofed = client.post("/api/track", content=body, headers={"X-Forwarded-For": US})
            other = client.post("/api/other", headers={"X-Forwarded-For": US})
    assert spoofed.json()["message"] == DROPPED
    assert other.status_code == 404  # the app itself saw no rewritten address either


def test_the_cli_proxy_stack_ignores_loopback_forwarding(sites_api: LiveApi) -> None:
    """``edgefilter proxy`` as served: a loopback client cannot claim another address."""
    created = sites_api.new_site(excludedIPs=["127.0.0.1"])
    argv = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", sites_api.url]
    args = parse_args(argv, {"EDGEFILTER_API_KEY": sites_api.key})
    proxy = build_proxy(args)
    site = str(created["siteId"])
    body = f'{{"type": "pageview", "site_id": "{site}"}}'.encode()
    headers = {"X-Forwarded-For": US, "User-Agent": CHROME}
    try:
        proxy.edge_filter.source.ensure(site, None)  # type: ignore[attr-defined]
        with serve_in_thread(proxy) as url:
            transport = httpx.HTTPTransport(local_address="127.0.0.1")
            with httpx.Client(transport=transport, base_url=url) as client:
                answer = client.post("/api/track", content=body, headers=headers)
    finally:
        close_proxy(proxy)
    assert answer.json()["message"] == DROPPED


def test_the_proxy_takes_an_asn_database(sites_api: LiveApi) -> None:
    """``proxy --asn-db`` (or EDGEFILTER_ASN_DB) gives the filter its ASN database."""
    argv = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", sites_api.url]
    environ = {"EDGEFILTER_API_KEY": sites_api.key, "EDGEFILTER_ASN_DB": str(ASN_DB)}
    proxy = build_proxy(parse_args(argv, environ))
    try:
        assert proxy.edge_filter.asn_db is not None
    finally:
        close_proxy(proxy)
