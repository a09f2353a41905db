"""``edgefilter proxy``'s relay options, from flags and from ``EDGEFILTER_*`` variables."""

from __future__ import annotations

from typing import Any

import pytest

from edgefilter.cli import build_proxy, close_proxy, main, parse_args

BASE = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", "http://127.0.0.1:9"]


def built(argv: list[str], environ: dict[str, str]) -> Any:
    """The proxy the command line and variables describe (closed again at once)."""
    proxy = build_proxy(parse_args(argv, {"EDGEFILTER_API_KEY": "k", **environ}))
    close_proxy(proxy)
    return proxy


def test_the_defaults() -> None:
    """Both address headers, 64 KiB hits, 10 MiB replays, the ingest surface only."""
    proxy = built(BASE, {})
    assert proxy.app.address_headers == (b"x-real-ip", b"x-forwarded-for")
    assert proxy.max_body_bytes == 64 * 1024
    assert proxy.app.relay_all is False
    assert proxy.body_timeout == 30.0


def test_the_variables_set_the_relay_options() -> None:
    """EDGEFILTER_CLIENT_ADDRESS_HEADERS (comma-separated), _MAX_BODY, _RELAY."""
    environ = {
        "EDGEFILTER_CLIENT_ADDRESS_HEADERS": "CF-Connecting-IP, X-Real-IP",
        "EDGEFILTER_MAX_BODY": "1000",
        "EDGEFILTER_MAX_REPLAY_BODY": "2000",
        "EDGEFILTER_RELAY": "all",
        "EDGEFILTER_UPSTREAM_TIMEOUT": "2.5",
        "EDGEFILTER_BODY_TIMEOUT": "4",
    }
    proxy = built(BASE, environ)
    assert proxy.body_timeout == 4.0
    assert proxy.app.address_headers == (b"cf-connecting-ip", b"x-real-ip")
    assert proxy.max_body_bytes == 1000
    assert proxy.app.relay_all is True
    assert proxy.app.timeout.read == 2.5


def test_flags_win_and_none_sends_no_address() -> None:
    """The flag beats the variable; ``none`` sends no address header."""
    argv = [*BASE, "--client-address-header", "none", "--relay", "ingest"]
    proxy = built(
        argv, {"EDGEFILTER_CLIENT_ADDRESS_HEADERS": "x-real-ip", "EDGEFILTER_RELAY": "all"}
    )
    assert proxy.app.address_headers == ()
    assert proxy.app.relay_all is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--client-address-header", "bad header"], "'bad header' is not a header name"),
        (["--max-body", "0"], "'0' is not at least 1"),
        (["--body-timeout", "0"], "--body-timeout"),
        (["--relay", "some"], "invalid choice: 'some'"),
    ],
)
def test_bad_values_are_one_line_errors(
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad relay option: exit status 2, one line naming the value."""
    monkeypatch.setenv("EDGEFILTER_API_KEY", "k")
    try:
        status = main([*BASE, *extra])
    except SystemExit as exit_:  # argparse's own errors exit
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
