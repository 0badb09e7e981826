"""`python -m bench`: load a fresh database, measure the Postgres ceiling, then the whole
stack through its HTTP API. The last line printed is one JSON object with the figures;
it is also written to bench/results/last.json."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

import psycopg

from bench import database, pg_ceiling, phases, report
from bench.http_load import Customer
from bench.phases import LOGS, RESULTS, Db
from bench.report import say
from devtools.stack import Stack


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; --quick changes the defaults of what was not given explicitly."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000, help="customers to load")
    parser.add_argument("--trades", type=int, default=1_000_000, help="past trades to load")
    parser.add_argument(
        "--load-customers", type=int, default=10_000, help="customers the HTTP load uses"
    )
    parser.add_argument(
        "--duration", type=float, default=30, help="seconds of the throughput phase"
    )
    parser.add_argument("--warmup", type=float, default=5, help="seconds before it counts")
    parser.add_argument("--clients", type=int, default=64, help="closed-loop clients")
    parser.add_argument("--load-processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--rate", type=float, default=100, help="open-loop trades/s")
    parser.add_argument(
        "--api",
        choices=["v1", "v2"],
        default="v1",
        help="place through /api/v1/trades/ or Alpaca's /v2/orders",
    )
    parser.add_argument(
        "--latency-duration", type=float, default=20, help="seconds of the open-loop phase"
    )
    parser.add_argument(
        "--ceiling-seconds", type=float, default=10, help="seconds per ceiling variant"
    )
    parser.add_argument(
        "--failover-load", type=float, default=8, help="seconds of load around the failover"
    )
    parser.add_argument("--ceiling-connections", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=5, help="gunicorn workers")
    parser.add_argument(
        "--callback-web-workers",
        type=int,
        default=2,
        help="gunicorn workers serving only the exchange's callbacks (0: the web serves them)",
    )
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="nginx (deploy/nginx) in front of the web and the callback receiver, as in "
        "production; the gunicorns listen behind it",
    )
    parser.add_argument("--fill-delay-ms", default="2,5", help="the simulator's MIN,MAX")
    parser.add_argument(
        "--drain-timeout", type=float, default=45, help="most seconds to wait for a drain"
    )
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of our processes")
    parser.add_argument("--database", default="brokerage_bench", help="bench database name")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the database if a load finished in it"
    )
    parser.add_argument(
        "--check-load", action="store_true", help="run the audit right after loading"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a minute or two: small data, short phases (explicit flags win)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        quick = {
            "customers": 10_000,
            "trades": 100_000,
            "load_customers": 2_000,
            "duration": 8,
            "warmup": 2,
            "latency_duration": 6,
            "ceiling_seconds": 3,
            "failover_load": 6,
            "drain_timeout": 20,
        }
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:])}
        for key, value in quick.items():
            if key not in given:
                setattr(args, key, value)
    if args.customers < 100 or args.trades < 0:
        parser.error("want at least 100 customers and no negative trade count")
    if args.trades > 100 * args.customers:
        parser.error("at most 100 past trades per customer (their cash must cover the buys)")
    return args


# -- each phase: its heading, its measurement, its lines, its figures ----------------------


def ceiling_phase(
    args: argparse.Namespace, url: str, customer_ids: list[int], tickers: list[str]
) -> dict:
    report.ceiling_header(args)
    ceiling = phases.measure_ceiling(args, url, customer_ids, tickers)
    report.print_ceiling(ceiling)
    return report.ceiling_json(ceiling)


def web_ceiling_phase(
    args: argparse.Namespace, url: str, db: Db, customer_ids: list[int], tickers: list[str]
) -> dict:
    """The closed loop of (a), with nothing else running, on the ceiling's customers, against
    each of phases.web_ceiling_variants()."""
    first, last = customer_ids[0], customer_ids[-1]
    customers = phases.load_customers(db, len(customer_ids), first=first)
    if len(customers) < phases.web_ceiling_threads(args) * args.load_processes:
        report.web_ceiling_skipped()
        return {}
    report.web_ceiling_header(args)
    variants = []
    for name, (label, env) in phases.web_ceiling_variants(first, last).items():
        variant = phases.measure_web_variant(
            args, url, db, customers, tickers, name=name, label=label, env=env
        )
        report.print_web_variant(variant)
        variants.append(variant)
    cancelled = pg_ceiling.clean_up(url, first=first, last=last)
    report.print_web_ceiling_end(variants, cancelled)
    return report.web_ceiling_json(variants)


def throughput_phase(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> dict:
    report.throughput_header(args, customers)
    throughput = phases.measure_throughput(args, stack, db, customers, tickers)
    report.print_throughput(throughput)
    return report.throughput_json(throughput)


def latency_phase(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> dict:
    report.latency_header(args)
    latency = phases.measure_latency(args, stack, db, customers, tickers)
    report.print_latency(args, latency)
    return report.latency_json(latency)


def failover_phase(
    args: argparse.Namespace, stack: Stack, db: Db, customers: list[Customer], tickers: list[str]
) -> dict:
    report.failover_header(args)
    failover = phases.measure_failover(args, stack, db, customers, tickers)
    report.print_failover(failover)
    return report.failover_json(failover)


def main(argv: list[str] | None = None) -> int:
    """Run every phase; exit status 1 if the audit afterwards finds a broken invariant."""
    args = parse_args(argv)
    started = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir()
    url = phases.prepare_database(args)
    results: dict = {"proxy": args.proxy, "api": args.api}
    with psycopg.connect(url, autocommit=True, application_name="bench") as conn:
        db = Db(conn)
        machine = phases.machine_info(db)
        say(f"machine: {json.dumps(machine)}")
        tickers = [r[0] for r in db.all("SELECT symbol FROM trades_ticker WHERE active")]
        ceiling_n = min(4000, args.customers // 4)
        first_ceiling = args.customers - ceiling_n + 1
        ceiling_ids = list(range(first_ceiling, args.customers + 1))
        results.update(ceiling_phase(args, url, ceiling_ids, tickers))
        results.update(web_ceiling_phase(args, url, db, ceiling_ids, tickers))
        customers = phases.load_customers(db, min(args.load_customers, first_ceiling - 1))
        stack = phases.start_stack(args, url, db)
        try:
            results.update(throughput_phase(args, stack, db, customers, tickers))
            results.update(latency_phase(args, stack, db, customers, tickers))
            results.update(failover_phase(args, stack, db, customers, tickers))
        finally:
            stack.stop_all()
        left = db.open_trades()
    ok, audit_report = database.audit(url, quiescent=left == 0)
    report.print_audit(ok, audit_report, left)
    report.print_verdict(results)
    say(f"bench took {time.monotonic() - started:.0f} s")
    summary = report.summary(results, audit_ok=ok, machine=machine)
    (RESULTS / "last.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
