"""The bench's report: its live output, each phase's printed lines and JSON figures, and
whether the targets were met."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import TYPE_CHECKING

from bench import cpu
from bench.http_load import NOT_SENT, Customer, Sample
from bench.stats import ms, percentile

if TYPE_CHECKING:
    from bench.phases import Ceiling, Failover, Latency, Throughput, WebVariant

HEADLINE = (
    "placed_per_s",
    "filled_per_s",
    "place_p50_ms",
    "place_p99_ms",
    "fill_p50_ms",
    "fill_p99_ms",
    "failover_s",
    "pg_ceiling_per_s",
    "pg_ceiling_notify_per_s",
)
TARGETS = {
    "placed_per_s": (">=", 700),
    "filled_per_s": (">=", 250),
    "place_p99_ms": ("<", 50),
    "failover_s": ("<", 2),
}


def say(text: str = "") -> None:
    """Print now (the output is read live, and through make)."""
    print(text, flush=True)


def describe_cpu(used: cpu.Usage, indent: str = "  ") -> None:
    """Print the CPU line, and a warning when someone else's work skewed the figures."""
    say(f"{indent}{used.describe()}")
    other = used.cores.get(cpu.OTHER, 0.0)
    if other >= 0.2:
        say(
            f"{indent}WARNING: other work on this machine used {other:.2f} cores meanwhile "
            "(other sessions, tests...): the figures above are pessimistic"
        )


def status_line(samples: list[Sample]) -> str:
    """How many responses of each HTTP status."""
    names = {0: "no answer", NOT_SENT: "never sent (too far behind)"}
    counts = Counter(s.status for s in samples)
    return ", ".join(f"{names.get(code, code)}: {n:,}" for code, n in sorted(counts.items()))


# -- the Postgres ceiling --------------------------------------------------------------------


def ceiling_header(args: argparse.Namespace) -> None:
    say(
        f"Postgres ceiling: the place-trade transaction from {args.ceiling_connections} "
        f"processes, {args.ceiling_seconds:.0f} s per variant in alternating windows"
    )


def print_ceiling(ceiling: Ceiling) -> None:
    for result in ceiling.windows:
        say(f"  {result.describe()}")
        describe_cpu(result.cpu, "    ")
        if result.refused:
            say(f"    ({result.refused} refused by the rate limit and rolled back)")
    best = ceiling.best
    say(
        f"  ceiling: {best['plain'].per_s:,.0f} tx/s plain, {best['notify'].per_s:,.0f} tx/s "
        f"with NOTIFY in the transaction ({best['notify'].per_s / best['plain'].per_s:.0%})"
    )
    for result in ceiling.pgbench:
        say(f"  {result.describe()}")
        describe_cpu(result.cpu, "    ")
    say(
        f"  cancelled the ceiling's {ceiling.cancelled:,} placed trades and removed their "
        "outbox rows"
    )


def ceiling_json(ceiling: Ceiling) -> dict:
    figures = {
        "pg_ceiling_per_s": round(ceiling.best["plain"].per_s, 1),
        "pg_ceiling_notify_per_s": round(ceiling.best["notify"].per_s, 1),
    }
    for variant in ("pgbench_plain", "pgbench_notify"):
        if variant in ceiling.best:
            figures[f"{variant}_per_s"] = round(ceiling.best[variant].per_s, 1)
    return figures


# -- the web ceiling -------------------------------------------------------------------------


def web_ceiling_header(args: argparse.Namespace) -> None:
    say(
        f"web ceiling: the closed loop of (a), {args.clients} clients, gunicorn "
        f"{args.web_workers} sync workers and nothing else, {args.ceiling_seconds:.0f} s each"
    )


def web_ceiling_skipped() -> None:
    say("web ceiling: skipped (fewer ceiling customers than clients)")


def print_web_variant(variant: WebVariant) -> None:
    created = variant.created
    say(
        f"  {variant.rate:8,.0f} requests/s  ({variant.label}; "
        f"p50 {ms(percentile(created, 50))} ms, p99 {ms(percentile(created, 99))} ms; "
        f"{status_line(variant.counted)}); web CPU {variant.web_ms:.1f} ms per request"
    )
    describe_cpu(variant.cpu, "    ")


def print_web_ceiling_end(variants: list[WebVariant], cancelled: int) -> None:
    """What the bare view's CPU per request leaves for a whole trade; the clean-up."""
    bare = next((v for v in variants if v.name == "bare_drf"), None)
    # The figure as the JSON reports it.
    if bare is not None and (bare_ms := round(bare.web_ms, 2)):
        # A filled trade is two requests through Django (the placement, the callback).
        cap = (os.cpu_count() or 1) * 1000 / (2 * bare_ms)
        say(
            f"  two such bare requests per trade (placement, callback) alone would cap what "
            f"{os.cpu_count()} cores carry end to end at ~{cap:,.0f} trades/s"
        )
    say(f"  cancelled the web ceiling's {cancelled:,} placed trades and removed their outbox rows")


def web_ceiling_json(variants: list[WebVariant]) -> dict:
    figures = {}
    for variant in variants:
        figures[f"{variant.name}_per_s"] = round(variant.rate, 1)
        figures[f"{variant.name}_web_cpu_ms"] = round(variant.web_ms, 2)
    return figures


# -- (a) throughput ------------------------------------------------------------------------


def throughput_header(args: argparse.Namespace, customers: list[Customer]) -> None:
    say(
        f"(a) throughput: closed loop, {args.clients} clients over {len(customers):,} customers, "
        f"{args.warmup:.0f} s warm-up + {args.duration:.0f} s"
    )


def print_throughput(t: Throughput) -> None:
    say(f"  responses in the window: {status_line(t.counted)}")
    say(
        f"  placed {t.placed_per_s:,.0f} trades/s (HTTP 201s); request latency at saturation "
        f"p50 {ms(percentile(t.created, 50))} ms, p99 {ms(percentile(t.created, 99))} ms"
    )
    say(f"  filled {t.filled_per_s:,.0f} trades/s while the load ran")
    describe_cpu(t.cpu)
    say(f"  web CPU per HTTP request (placements and callbacks): {t.web_ms:.1f} ms")
    say(
        f"  drain after the load: {t.drain_s:.1f} s"
        + (f" (gave up with {t.left:,} still open)" if t.left else "")
        + f"; outcomes {dict(t.statuses)}"
    )
    say(
        f"  the exchange got {t.exchange['orders_received']:,} orders and "
        f"{t.exchange['quote_batches']:,} quote requests for {t.exchange['quotes']:,} tickers"
    )
    say(
        f"  filled {t.filled_per_s_incl_drain:,.0f} trades/s from the first request to the last "
        f"fill ({t.filled_total:,} of {t.placed_total:,}); place→filled at saturation "
        f"p50 {ms(percentile(t.fills, 50))} ms, p99 {ms(percentile(t.fills, 99))} ms"
    )
    by_role = t.cpu_ms_per_trade_by_role
    say(
        f"  CPU per trade placed and filled (stack + Postgres): {t.cpu_ms_per_trade:.1f} ms "
        f"({', '.join(f'{name} {value}' for name, value in by_role.items())}); with the "
        f"{os.cpu_count()} cores to itself the system could do ~{t.capacity_per_s:,.0f} "
        f"trades/s, ~{t.capacity_per_s_exchange_elsewhere:,.0f} with the exchange elsewhere"
    )


def throughput_json(t: Throughput) -> dict:
    return {
        "placed_per_s": round(t.placed_per_s, 1),
        "filled_per_s": round(t.filled_per_s, 1),
        "filled_per_s_incl_drain": round(t.filled_per_s_incl_drain, 1),
        "drain_s": round(t.drain_s, 1),
        "saturated_place_p50_ms": ms(percentile(t.created, 50)),
        "saturated_place_p99_ms": ms(percentile(t.created, 99)),
        "saturated_fill_p50_ms": ms(percentile(t.fills, 50)),
        "saturated_fill_p99_ms": ms(percentile(t.fills, 99)),
        "web_cpu_ms_per_request": round(t.web_ms, 2),
        "cpu_ms_per_trade": round(t.cpu_ms_per_trade, 2),
        "cpu_ms_per_trade_by_role": t.cpu_ms_per_trade_by_role,
        "cpu_bound_capacity_per_s": round(t.capacity_per_s),
        "cpu": t.cpu.to_json(),
    }


# -- (b) latency -------------------------------------------------------------------------


def latency_header(args: argparse.Namespace) -> None:
    say(
        f"(b) latency: open loop at {args.rate:.0f} trades/s for {args.latency_duration:.0f} s"
        f" through {'/v2/orders' if args.api == 'v2' else '/api/v1/trades/'}"
    )


def print_latency(args: argparse.Namespace, lat: Latency) -> None:
    counted = lat.counted
    say(f"  responses: {status_line(lat.samples)}")
    describe_cpu(lat.cpu)
    say(
        f"  place request p50 {ms(percentile(counted, 50))} ms, "
        f"p99 {ms(percentile(counted, 99))} ms, max {ms(max(counted, default=float('nan')))} ms "
        "(from when each request was due"
        + (
            f"; {lat.unsent:,} never sent count with their wait, a lower bound)"
            if lat.unsent
            else ")"
        )
    )
    say(
        f"  (c) place→filled at {args.rate:.0f}/s: p50 {ms(percentile(lat.fills, 50))} ms, "
        f"p99 {ms(percentile(lat.fills, 99))} ms; outcomes {dict(lat.statuses)}; drained in "
        f"{lat.drained_s:.1f} s" + (f", {lat.left:,} still open" if lat.left else "")
    )


def latency_json(lat: Latency) -> dict:
    return {
        "place_p50_ms": ms(percentile(lat.counted, 50)),
        "place_p99_ms": ms(percentile(lat.counted, 99)),
        "place_never_sent": lat.unsent,
        "fill_p50_ms": ms(percentile(lat.fills, 50)),
        "fill_p99_ms": ms(percentile(lat.fills, 99)),
        "latency_phase_cpu": lat.cpu.to_json(),
    }


# -- (d) failover ------------------------------------------------------------------------


def failover_header(args: argparse.Namespace) -> None:
    say(f"(d) failover: SIGKILL the leader of shards 1/2 under {args.rate:.0f} trades/s")


def print_failover(f: Failover) -> None:
    say(f"  killed {f.leader}; {f.standby} held all {f.shards} shards after {f.failover_s:.2f} s")
    say(
        f"  first trade of those shards sent by {f.standby} {f.first_send_s} s after the kill; "
        f"trades placed around the failover: {dict(f.statuses)}, place→filled "
        f"p50 {ms(percentile(f.fills, 50))} ms, max {ms(max(f.fills, default=float('nan')))} ms; "
        f"drained in {f.drained_s:.1f} s" + (f", {f.left} still open" if f.left else "")
    )


def failover_json(f: Failover) -> dict:
    return {"failover_s": round(f.failover_s, 3), "failover_first_send_s": f.first_send_s}


# -- the end -------------------------------------------------------------------------------


def print_audit(ok: bool, report: str, left: int) -> None:
    say(
        f"audit after the run{'' if left == 0 else f' ({left} trades still open)'}: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    for line in report.splitlines():
        if not line.startswith("ok") and line.strip():
            say(f"  {line}")


def print_verdict(results: dict) -> None:
    say("")
    say("targets:")
    for line in verdict(results):
        say(line)


def summary(results: dict, *, audit_ok: bool, machine: dict) -> dict:
    """The JSON of the run: the headline figures, then every other one under `details`."""
    figures = dict(results)
    out = {key: figures.pop(key, None) for key in HEADLINE}
    out.update(audit_ok=audit_ok, details=figures, machine=machine)
    return out


def verdict(results: dict) -> list[str]:
    """One line per target the product owner set: met or missed."""
    lines = []
    ceiling = results.get("pg_ceiling_per_s")
    for key, (op, target) in TARGETS.items():
        value = results.get(key)
        if value is None:
            continue
        ok = value >= target if op == ">=" else value < target
        line = f"  {key:<14} {value:>9}  target {op} {target:<4} {'met' if ok else 'MISSED'}"
        if ceiling and key.endswith("per_s"):
            line += f"  ({value / ceiling:.0%} of the Postgres ceiling"
            if pgbench := results.get("pgbench_plain_per_s"):
                line += f", {value / pgbench:.0%} of pgbench's"
            if key == "placed_per_s" and (bare := results.get("bare_drf_per_s")):
                line += f"; {value / bare:.0%} of a bare DRF view's rate"
                if alone := results.get("api_alone_per_s"):
                    line += f", our API alone {alone / bare:.0%}"
            line += ")"
        lines.append(line)
    return lines
