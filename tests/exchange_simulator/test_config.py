"""Unit tests: configuration parsing, fault settings, prices."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from exchange_simulator.config import config_from_args
from exchange_simulator.faults import FaultConfig, MarketHours, OutageWindow
from exchange_simulator.market import Market, SharedRandom, start_price

SECRET = "whsec_" + base64.b64encode(b"config-test-secret-0123456789abc").decode()


def test_flags_are_parsed() -> None:
    config = config_from_args(
        [
            "--host=0.0.0.0",
            "--port=9100",
            "--seed=42",
            f"--webhook-secret={SECRET}",
            "--fill-delay-ms=10,20",
            "--reject-rate=0.1",
            "--market-hours=13:30-20:00",
            "--duplicate-rate=0.2",
            "--callback-delay-ms=100",
            "--reorder-rate=0.3",
            "--lose-first-rate=0.4",
            "--no-callback-rate=0.05",
            "--outage=10-20,30.5-40",
            "--slow-ms=7",
        ],
        environ={},
    )
    assert (config.host, config.port, config.seed) == ("0.0.0.0", 9100, 42)
    assert config.webhook_secret == SECRET
    faults = config.faults
    assert faults.fill_delay_ms == (10, 20)
    assert faults.reject_rate == 0.1
    assert faults.market_hours == MarketHours(time(13, 30), time(20, 0))
    assert (faults.duplicate_rate, faults.reorder_rate) == (0.2, 0.3)
    assert (faults.lose_first_rate, faults.no_callback_rate) == (0.4, 0.05)
    assert faults.callback_delay_ms == 100 and faults.slow_ms == 7
    assert faults.outage_windows == (OutageWindow(10, 20), OutageWindow(30.5, 40))
    assert faults.to_json()["outage_windows"] == "10-20,30.5-40"


def test_environment_is_read_and_flags_win() -> None:
    env = {
        "EXCHANGE_SIM_PORT": "9200",
        "EXCHANGE_SIM_SEED": "5",
        "EXCHANGE_SIM_DUPLICATE_RATE": "0.5",
        "EXCHANGE_SIM_OUTAGE": "1-2",
        "EXCHANGE_WEBHOOK_SECRET": f"{SECRET} whsec_b3RoZXI=",
    }
    config = config_from_args(["--seed", "6"], environ=env)
    assert (config.port, config.seed) == (9200, 6)
    assert config.faults.duplicate_rate == 0.5
    assert config.faults.outage_windows == (OutageWindow(1, 2),)
    assert config.webhook_secret == f"{SECRET} whsec_b3RoZXI="
    assert config.faults.fill_delay_ms == (5, 30)


def test_defaults() -> None:
    config = config_from_args([], environ={"EXCHANGE_WEBHOOK_SECRET": SECRET})
    assert (config.host, config.port) == ("127.0.0.1", 9000)
    assert config.faults == FaultConfig()
    assert config.faults.in_outage(0) is False


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no secret
        ["--webhook-secret", "whsec_"],
        ["--webhook-secret", SECRET, "--reject-rate", "1.5"],
        ["--webhook-secret", SECRET, "--fill-delay-ms", "30,5"],
        ["--webhook-secret", SECRET, "--market-hours", "9:30-16:00"],
        ["--webhook-secret", SECRET, "--outage", "20-10"],
        ["--webhook-secret", SECRET, "--port", "nope"],
    ],
)
def test_bad_configuration_exits(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        config_from_args(argv, environ={})


def test_fault_updates() -> None:
    faults = FaultConfig().updated({"outage": "true", "outage_windows": [[5, 10]]})
    assert faults.in_outage(100)
    faults = faults.updated({"outage": False})
    assert not faults.in_outage(4.9) and faults.in_outage(5) and not faults.in_outage(10)
    with pytest.raises(ValueError, match="unknown"):
        faults.updated({"nonsense": 1})
    with pytest.raises(ValueError, match="slow_ms"):
        faults.updated({"slow_ms": -1})
    assert faults.updated({"market_hours": None}).market_hours is None


def test_market_hours_can_span_midnight() -> None:
    overnight = MarketHours(time(22, 0), time(6, 0))
    assert overnight.is_open(datetime(2024, 1, 1, 23, 0, tzinfo=UTC))
    assert overnight.is_open(datetime(2024, 1, 1, 5, 59, tzinfo=UTC))
    assert not overnight.is_open(datetime(2024, 1, 1, 6, 0, tzinfo=UTC))
    day = MarketHours(time(13, 30), time(20, 0))
    assert day.is_open(datetime(2024, 1, 1, 13, 30, tzinfo=UTC))
    assert not day.is_open(datetime(2024, 1, 1, 20, 0, tzinfo=UTC))


def test_start_price_is_deterministic_and_in_range() -> None:
    prices = [start_price(42, f"T{i}") for i in range(500)]
    assert prices == [start_price(42, f"T{i}") for i in range(500)]
    assert all(Decimal(5) <= p < Decimal(500) for p in prices)
    assert all(p == p.quantize(Decimal("0.0001")) for p in prices)
    assert start_price(42, "AAPL") != start_price(43, "AAPL")


def test_walk_never_reaches_zero() -> None:
    market = Market(1, SharedRandom(1))
    market._prices["PENNY"] = Decimal("0.0002")
    for _ in range(2000):
        assert market.tick("PENNY") >= Decimal("0.0001")
