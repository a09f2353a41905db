"""``edgefilter proxy``'s bot-layer options: --bot-layer, --datacenter-*, --rates-redis."""

from __future__ import annotations

import pytest

from edgefilter._asn import AsnResolver
from edgefilter._botlayers import REQUEST_LAYERS, RequestLayers
from edgefilter._rates import LocalRates, RedisRates
from edgefilter.cli import BOT_LAYER_NAMES, CliError, bot_layers_from_args, main, parse_args

from .conftest import ASN_DB, DATA

BASE = ["proxy", "--upstream", "http://127.0.0.1:9", "--api", "http://127.0.0.1:9"]
KEY = {"EDGEFILTER_API_KEY": "k"}


def layers_of(*argv: str, environ: dict[str, str] | None = None) -> RequestLayers | None:
    args = parse_args([*BASE, *argv], {**KEY, **(environ or {})})
    with AsnResolver(ASN_DB) as asn_db:
        found: RequestLayers | None = bot_layers_from_args(args, asn_db)
    return found


def test_the_names_are_the_request_layers() -> None:
    """The CLI's list of layer names is the library's."""
    assert BOT_LAYER_NAMES == REQUEST_LAYERS


def test_no_option_no_layers() -> None:
    """Without the options the proxy has no request layers (its pass path is unchanged)."""
    assert layers_of() is None


def test_layers_by_flag_and_by_variable() -> None:
    """--bot-layer repeats; EDGEFILTER_BOT_LAYERS is a comma list."""
    by_flag = layers_of("--bot-layer", "headers", "--bot-layer", "rate")
    assert by_flag is not None and by_flag.enabled == {"headers", "rate"}
    assert isinstance(by_flag.rates, LocalRates)
    by_env = layers_of(environ={"EDGEFILTER_BOT_LAYERS": "client,headers"})
    assert by_env is not None and by_env.enabled == {"client", "headers"}


def test_datacenter_files_and_asns_turn_the_layer_on() -> None:
    """A datacenter file or ASN turns the datacenter layer on, compiled from both."""
    found = layers_of(
        "--datacenter-file",
        str(DATA / "cidr" / "googlebot-ipv4.txt"),
        "--datacenter-asn",
        "AS15169",
    )
    assert found is not None and found.enabled == {"datacenter"}
    assert found.datacenter is not None
    assert "66.249.64.1" in found.datacenter and "1.0.0.1" in found.datacenter


def test_a_redis_url_turns_the_rate_layer_on_in_redis() -> None:
    """--rates-redis shares the rate layer's counts in Redis."""
    found = layers_of("--rates-redis", "redis://127.0.0.1:1/0")
    assert found is not None and isinstance(found.rates, RedisRates)


def test_the_datacenter_layer_needs_a_source() -> None:
    """--bot-layer datacenter alone is a usage error."""
    with pytest.raises(CliError, match="datacenter-file"):
        layers_of("--bot-layer", "datacenter")


def test_a_bad_layer_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown layer is refused by the parser, exit status 2."""
    with pytest.raises(SystemExit) as stopped:
        main([*BASE, "--bot-layer", "ua"])
    assert stopped.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
