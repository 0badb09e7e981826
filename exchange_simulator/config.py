"""Simulator configuration and its command line / environment parsing."""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exchange_simulator.callbacks import signing_secret
from exchange_simulator.faults import FaultConfig

ENV_PREFIX = "EXCHANGE_SIM_"
SHARED_SECRET_ENV = "EXCHANGE_WEBHOOK_SECRET"

# Flags that become FaultConfig fields (flag name -> field name).
_FAULT_FLAGS = {
    "fill_delay_ms": "fill_delay_ms",
    "reject_rate": "reject_rate",
    "market_hours": "market_hours",
    "duplicate_rate": "duplicate_rate",
    "callback_delay_ms": "callback_delay_ms",
    "reorder_rate": "reorder_rate",
    "lose_first_rate": "lose_first_rate",
    "no_callback_rate": "no_callback_rate",
    "outage": "outage_windows",
    "slow_ms": "slow_ms",
}


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    webhook_secret: str
    host: str = "127.0.0.1"
    port: int = 9000
    seed: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    callback_workers: int = 8
    callback_connect_timeout: float = 1.0
    callback_read_timeout: float = 5.0
    callback_give_up_after: float = 600.0
    log_level: str = "INFO"


def _env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exchange_simulator",
        description="Simulated stock exchange. Every --flag can also be set with the "
        f"environment variable {ENV_PREFIX}<FLAG_UPPER_SNAKE>; the flag wins.",
    )

    def add(flag: str, *, default: str | None, help: str, kind: type = str) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        env = _env_name(dest)
        # argparse runs string defaults through `type`, so env values are validated too.
        parser.add_argument(
            flag,
            dest=dest,
            type=kind,
            default=environ.get(env) or default,  # an empty variable counts as unset
            help=f"{help} [env {env}]",
        )

    add("--host", default="127.0.0.1", help="interface to bind")
    add("--port", default="9000", kind=int, help="port to bind (0 picks a free one)")
    add("--seed", default=None, kind=int, help="seed for prices and faults (default: random)")
    add(
        "--webhook-secret",
        default=None,
        help=f"Standard Webhooks secret(s) 'whsec_...', first one signs [also {SHARED_SECRET_ENV}]",
    )
    add("--fill-delay-ms", default=None, help="fill delay range 'MIN,MAX' (default 5,30)")
    add("--reject-rate", default=None, help="probability an order is rejected by the exchange")
    add("--market-hours", default=None, help="'HH:MM-HH:MM' UTC trading window (default always)")
    add("--duplicate-rate", default=None, help="probability a callback is delivered twice")
    add("--callback-delay-ms", default=None, help="extra delay before the first delivery")
    add("--reorder-rate", default=None, help="probability a callback is held back 0-500 ms")
    add("--lose-first-rate", default=None, help="probability the first delivery is dropped")
    add("--no-callback-rate", default=None, help="probability a callback is never sent")
    add("--outage", default=None, help="'START-END,...' seconds since start answering 503")
    add("--slow-ms", default=None, help="delay before every (non-control) response")
    add("--callback-workers", default="8", kind=int, help="callback delivery threads")
    add(
        "--callback-give-up-s",
        default="600",
        kind=float,
        help="stop retrying a callback this long after its first attempt",
    )
    add("--log-level", default="INFO", help="logging level")
    return parser


def config_from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> SimulatorConfig:
    """Build the configuration from flags, falling back to environment variables."""
    env = os.environ if environ is None else environ
    parser = build_parser(env)
    args = parser.parse_args(argv)
    secret = args.webhook_secret or env.get(SHARED_SECRET_ENV)
    if not secret:
        parser.error(f"a webhook secret is required: --webhook-secret or {SHARED_SECRET_ENV}")
    try:
        signing_secret(secret)
    except Exception as exc:
        parser.error(f"invalid webhook secret: {exc}")
    changes = {
        field_name: getattr(args, flag)
        for flag, field_name in _FAULT_FLAGS.items()
        if getattr(args, flag) is not None
    }
    try:
        faults = FaultConfig().updated(changes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.callback_workers < 1:
        parser.error("--callback-workers must be at least 1")
    return SimulatorConfig(
        webhook_secret=secret,
        host=args.host,
        port=args.port,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**31),
        faults=faults,
        callback_workers=args.callback_workers,
        callback_give_up_after=args.callback_give_up_s,
        log_level=args.log_level.upper(),
    )
