"""After the drain: what became of every order the clients sent, the invariants, the
exchange's view of ordering, stale-leader writes, and the report with its JSON last line."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos.faults import FaultRunner
from chaos.probes import Probe
from chaos.traffic import Traffic

TERMINAL = {"filled", "rejected", "cancelled"}
LEADER_WRITES = "old_status = 'placed' AND new_status IN ('in_progress', 'rejected')"

# Events worth counting in the processes' logs.
LOG_EVENTS = (
    "event=stale_leader",
    "event=leadership_taken",
    "event=lock_taken",
    "event=leadership_lost",
    "event=leadership_dropped",
    "event=lock_session_lost",
    "event=listener_lost",
    "event=session_on_standby",
    "event=database_error",
    "event=submit_failed",
    "event=quote_failed",
    "event=notify_failed",
    "event=reaper_resubmitted",
    "event=reaper_settled",
    "event=reaper_requeued",
    "event=reaper_error",
    "event=out_of_order",
    "event=overlapping",
    "event=frozen_leader_deposed",
    "event=submit_crashed",
    "WORKER TIMEOUT",
)

_STALE_BY_HOLDER_SQL = f"""
SELECT trade_id, shard, writer, lease_epoch, lease_holder FROM chaos_trade_write
WHERE {LEADER_WRITES} AND writer IS DISTINCT FROM lease_holder
"""
# A leader write that committed after a newer epoch of its shard had committed.
_STALE_BY_COMMIT_SQL = """
SELECT w.trade_id, w.shard, w.writer, w.lease_epoch, h.epoch, h.holder
FROM chaos_trade_write w
JOIN chaos_lease_history h ON h.shard = w.shard AND h.epoch > w.lease_epoch
WHERE w.old_status = 'placed' AND w.new_status IN ('in_progress', 'rejected')
  AND pg_xact_commit_timestamp(h.xmin) < pg_xact_commit_timestamp(w.xmin)
"""
_DOUBLE_SETTLED_SQL = """
SELECT trade_id FROM balances_ledgerentry l JOIN trades_trade t ON t.id = l.trade_id
GROUP BY trade_id, t.status HAVING count(*) > 2 OR t.status <> 'filled'
UNION
SELECT trade_id FROM chaos_trade_write WHERE old_status = 'in_progress'
GROUP BY trade_id HAVING count(*) > 1
"""
_NEGATIVE_SQL = """
SELECT (SELECT count(*) FROM balances_account
        WHERE cash < 0 OR cash_held < 0 OR cash_held > cash)
     + (SELECT count(*) FROM balances_position
        WHERE quantity < 0 OR held < 0 OR held > quantity)
"""


@dataclass
class Outcome:
    placed: int = 0
    terminal: int = 0
    lost: int = 0
    double_settled: int = 0
    negative_balances: int = 0
    out_of_order: int = 0
    stale_leader_writes: int = 0
    # Customers' event logs with a gap, or trades and ledger entries they misreport.
    event_log_broken: int = 0
    audit_ok: bool = False
    lines: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def failed(self) -> bool:
        return bool(
            self.lost
            or self.double_settled
            or self.negative_balances
            or self.out_of_order
            or self.stale_leader_writes
            or self.event_log_broken
            or not self.audit_ok
        )


def verify(
    *,
    probe: Probe,
    traffic: Traffic,
    exchange_stats: dict,
    exchange_orders: list[dict],
    commit_timestamps: bool,
    log_dir: Path,
) -> Outcome:
    out = Outcome()
    _orders(probe, traffic, out)
    _settlement(probe, out)
    _ordering(probe, exchange_stats, exchange_orders, out)
    _stale_writes(probe, commit_timestamps, log_dir, out)
    violations = _audit(out)

    def audited(*fragments: str) -> int:
        return sum(n for name, n in violations.items() if any(f in name for f in fragments))

    # The audit looks at the same facts from the ledger's and the trades' side.
    out.double_settled = max(out.double_settled, audited("settled exactly once"))
    out.negative_balances = max(out.negative_balances, audited("no negative"))
    out.out_of_order += audited("sequence order", "two trades of one customer in flight")
    out.event_log_broken = audited("event log")
    out.lines.append(
        f"event logs: {out.event_log_broken} gaps or events that disagree with the trades "
        "and the ledger"
    )
    return out


def _orders(probe: Probe, traffic: Traffic, out: Outcome) -> None:
    rows = probe.rows("SELECT id, customer_id, client_order_id, status, reason FROM trades_trade")
    by_id = {row[0]: row for row in rows}
    by_key = {(row[1], row[2]): row for row in rows}
    outcomes = Counter(order.outcome for order in traffic.orders)
    accepted: dict[int, tuple] = {}
    missing: list[str] = []
    for order in traffic.orders:
        if order.outcome == "accepted":
            row = by_id.get(order.trade_id)
            if row is None or (row[1], row[2]) != (order.customer_id, order.key):
                missing.append(f"{order.key} -> trade {order.trade_id}: {row}")
            else:
                accepted[row[0]] = row
        elif order.outcome in ("unanswered", "pending"):
            # The answer never reached the client, but the API may have taken the order.
            row = by_key.get((order.customer_id, order.key))
            if row is not None:
                accepted[row[0]] = row
    open_ = [row for row in accepted.values() if row[3] not in TERMINAL]
    out.placed = len(accepted)
    out.terminal = len(accepted) - len(open_)
    out.lost = len(missing) + len(open_)
    statuses = Counter(
        row[3] if row[3] != "rejected" else f"rejected ({row[4]})" for row in accepted.values()
    )
    known = {(order.customer_id, order.key) for order in traffic.orders}
    strangers = [row for row in rows if (row[1], row[2]) not in known]
    cancelled_mismatch = [
        order.key
        for order in traffic.orders
        if order.cancel == "cancelled" and by_id.get(order.trade_id, (0,) * 4)[3] != "cancelled"
    ]
    apis_of: dict[int, set[str]] = defaultdict(set)
    for order in traffic.orders:
        if order.outcome == "accepted":
            apis_of[order.customer_id].add(order.api)
    both = sum(apis == {"v1", "v2"} for apis in apis_of.values())
    c = traffic.counters
    out.lines += [
        f"customers with orders through both /api/v1/ and /v2/: {both} of {len(apis_of)}",
        f"orders sent: {len(traffic.orders)} ({dict(outcomes)}); HTTP requests "
        f"{c['requests']}, connection errors {c['connection_errors']}, timeouts "
        f"{c['timeouts']}, 5xx {sum(v for k, v in c.items() if k.startswith('server_errors'))}, "
        f"429 {c['rate_limited']}; slowest answer {traffic.max_latency:.2f}s",
        f"answers on /api/v1/: 201 {c['created']}, 200 replay after a lost answer "
        f"{c['replayed']}; "
        f"placed through Alpaca's /v2/ (200 either way) {c['placed_v2']}; "
        f"refused {sum(v for k, v in c.items() if k.startswith('refused_'))}",
        f"deliberate replays: same trade {c['replays_same_trade']}, new trade "
        f"{c['replays_new_trade']}; cancels: {c['cancel_cancelled']} cancelled, "
        f"{c['cancel_not_cancellable']} too late (409 or /v2/'s 422), "
        f"{c['cancel_unanswered']} unanswered",
        f"accepted trades by final status: {dict(sorted(statuses.items()))}",
    ]
    if missing:
        out.findings.append(f"accepted but missing or not the client's: {missing[:5]}")
    if open_:
        out.findings.append(f"accepted but still open: {[r[:4] for r in open_[:5]]}")
    if strangers:
        out.findings.append(f"{len(strangers)} trades no client sent, e.g. {strangers[:3]}")
    if c["replays_new_trade"]:
        out.findings.append(
            f"{c['replays_new_trade']} replays with the same key were not "
            "answered with the original trade"
        )
    if cancelled_mismatch:
        out.findings.append(
            f"cancel answered 200 (/v2/: 204) but trade not cancelled: {cancelled_mismatch}"
        )
    refused = [o for o in traffic.orders if o.outcome == "refused"]
    if refused:
        out.findings.append(
            f"{len(refused)} orders refused by the API, e.g. "
            f"{[(o.key, o.status_code, o.detail[:80]) for o in refused[:3]]}"
        )


def _settlement(probe: Probe, out: Outcome) -> None:
    double = probe.rows(_DOUBLE_SETTLED_SQL)
    out.double_settled = len(double)
    ((negative,),) = probe.rows(_NEGATIVE_SQL)
    out.negative_balances = negative
    ((entries, trades),) = probe.rows(
        "SELECT count(*), count(DISTINCT trade_id) FROM balances_ledgerentry "
        "WHERE trade_id IS NOT NULL"
    )
    out.lines.append(
        f"ledger: {entries} entries for {trades} settled trades; double settlements "
        f"{out.double_settled} {[r[0] for r in double[:5]]}; negative balances {negative}"
    )


def _ordering(probe: Probe, stats: dict, orders: list[dict], out: Outcome) -> None:
    by_account: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for order in sorted(orders, key=lambda o: o["received_at"]):
        by_account[order["account_id"]].append((order["received_at"], order["sequence"]))
    unsorted = [
        account
        for account, seen in by_account.items()
        if [s for _, s in seen] != sorted(s for _, s in seen)
    ]
    seqs = dict(probe.rows("SELECT id::text, seq FROM trades_trade"))
    wrong_seq = [
        o["client_order_id"] for o in orders if seqs.get(o["client_order_id"]) != o["sequence"]
    ]
    out.out_of_order = stats["out_of_order"] + stats["overlapping"] + len(unsorted)
    out.lines.append(
        f"exchange: {stats['orders_received']} orders, {stats['duplicate_submissions']} "
        f"resubmissions, {stats['fills']} fills, {stats['rejections']} rejections, "
        f"{stats['unavailable']} refused in outages, callbacks delivered "
        f"{stats['callbacks_delivered']} (duplicated {stats['callbacks_duplicated']}, dropped "
        f"{stats['callbacks_dropped']}, suppressed {stats['callbacks_suppressed']}, abandoned "
        f"{stats['callbacks_abandoned']}, pending {stats['callbacks_pending']})"
    )
    out.lines.append(
        f"ordering: exchange out_of_order {stats['out_of_order']}, overlapping "
        f"{stats['overlapping']}, accounts whose orders arrived out of sequence {len(unsorted)}"
    )
    if wrong_seq:
        out.findings.append(f"exchange orders whose sequence is not the trade's: {wrong_seq[:5]}")
    if unsorted:
        out.findings.append(f"accounts with orders out of sequence at the exchange: {unsorted[:5]}")


def _stale_writes(probe: Probe, commit_timestamps: bool, log_dir: Path, out: Outcome) -> None:
    by_holder = probe.rows(_STALE_BY_HOLDER_SQL)
    by_commit = probe.rows(_STALE_BY_COMMIT_SQL) if commit_timestamps else []
    stale = {row[0] for row in by_holder} | {row[0] for row in by_commit}
    out.stale_leader_writes = len(stale)
    ((leader_writes,),) = probe.rows(
        f"SELECT count(*) FROM chaos_trade_write WHERE {LEADER_WRITES}"
    )
    writers = probe.rows(
        f"SELECT writer, count(*) FROM chaos_trade_write WHERE {LEADER_WRITES} GROUP BY writer "
        "ORDER BY writer"
    )
    reaper_bumps = probe.rows(
        "SELECT shard, count(*) FROM chaos_lease_history WHERE holder LIKE 'reaper %' "
        "GROUP BY shard ORDER BY shard"
    )
    ((takeovers,),) = probe.rows("SELECT count(*) FROM chaos_lease_history")
    rejections = sum(
        path.read_text(errors="replace").count("event=stale_leader")
        for path in log_dir.glob("w*.log")
    )
    how = "holder and commit order" if commit_timestamps else "holder only (no commit timestamps)"
    out.lines.append(
        f"leader writes: {leader_writes} by {dict(writers)}; stale ones that took effect "
        f"{out.stale_leader_writes} (checked by {how}); lease changes {takeovers}; fencing "
        f"rejections in worker logs (event=stale_leader) {rejections}"
    )
    if by_holder or by_commit:
        out.findings.append(f"stale leader writes: {by_holder[:3]} {by_commit[:3]}")
    if reaper_bumps:
        out.findings.append(
            f"lease rows taken by a reaper (shard, times): {reaper_bumps}; the reaper's lock "
            "must not touch outbox_shardlease: it bumps that shard's epoch and fences out "
            "the shard's real leader"
        )


def _audit(out: Outcome) -> dict[str, int]:
    """execution.audit.audit(quiescent=True); returns the number of violations per check."""
    from django.db import connection

    from execution.audit import audit

    connection.close()  # the chaos process's own session may predate a Postgres restart
    checks = audit(quiescent=True)
    out.audit_ok = all(check.ok for check in checks)
    failed = [c for c in checks if not c.ok]
    out.lines.append(
        f"audit --quiescent: {len(checks) - len(failed)} of {len(checks)} invariants hold"
    )
    for check in failed:
        out.findings.append(f"audit: {check.name}: {check.count} violations, e.g. {check.failures}")
    return {check.name: check.count for check in checks}


# What the server says about sessions it ended and trouble it saw.
POSTGRES_EVENTS = (
    "terminating connection due to administrator command",
    "terminating connection due to idle-in-transaction timeout",
    "deadlock detected",
    "canceling statement due to lock timeout",
    "database system was interrupted",
    "PANIC",
)
# Exceptions a process may log while the database is away (a 500 the client retries).
DATABASE_OUTAGE_ERRORS = ("OperationalError", "InterfaceError", "AdminShutdown")
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):\n(?:[ \t].*\n)*(.+)$", re.M)


def scan_logs(log_dir: Path) -> tuple[list[str], list[str]]:
    """Per process, how often each notable event was logged and which exceptions ended
    its tracebacks; plus a finding for each kind of traceback a database outage does not
    explain."""
    lines, findings = [], []
    server_log = log_dir / "postgres.log"
    if server_log.exists():
        text = server_log.read_text(errors="replace")
        counts = {event: text.count(event) for event in POSTGRES_EVENTS if event in text}
        lines.append(f"postgres: {counts}")
    for path in sorted(log_dir.glob("*.log")):
        if path.name in ("chaos.log", "migrate.log", "postgres.log"):
            continue
        text = path.read_text(errors="replace")
        counts = {e.removeprefix("event="): text.count(e) for e in LOG_EVENTS if e in text}
        tracebacks = [(_exception_name(m.group(1)), m.group(0)) for m in _TRACEBACK.finditer(text)]
        ends = Counter(kind for kind, _ in tracebacks)
        errors = text.count(" ERROR ")
        lines.append(f"{path.stem}: {counts}; ERROR lines {errors}; tracebacks {dict(ends)}")
        unexplained: dict[str, str] = {}
        for kind, block in tracebacks:
            if kind not in DATABASE_OUTAGE_ERRORS:
                unexplained.setdefault(kind, block)
        for kind, block in unexplained.items():
            findings.append(
                f"{path.name}: {ends[kind]} traceback(s) ending in {kind}; the first:\n{block}"
            )
    return lines, findings


def _exception_name(last_line: str) -> str:
    return last_line.split(":", 1)[0].rsplit(".", 1)[-1].strip()


def render(
    *,
    seed: int,
    outcome: Outcome,
    runner: FaultRunner,
    extra_findings: list[str],
    log_dir: Path,
    say: Callable[[str], None],
    say_last: Callable[[str], None],
) -> dict:
    """Print the report; return (and print as the very last line) the JSON summary."""
    say("=" * 78)
    say(f"chaos soak, seed {seed}; logs in {log_dir}")
    for line in outcome.lines:
        say("  " + line)
    measured = [f.seconds for f in runner.failovers if f.seconds is not None]
    max_failover = max(measured) if measured else None
    say(f"  faults injected: {dict(sorted(runner.counts.items()))}")
    if runner.skipped:
        say(f"  faults skipped: {dict(sorted(runner.skipped.items()))}")
    say(
        "  failovers (s): "
        + ", ".join(
            f"{f.kind}:{f.deposed}={'never' if f.seconds is None else f'{f.seconds:.2f}'}"
            for f in runner.failovers
        )
    )
    lines, tracebacks = scan_logs(log_dir)
    say("  log events per process:")
    for line in lines:
        say("    " + line)
    say("  what the faults did:")
    for note in runner.notes:
        say("    " + note)
    findings = runner.findings + extra_findings + outcome.findings + tracebacks
    say(f"  findings ({len(findings)}):")
    for text in findings:
        say("    - " + text.replace("\n", "\n      "))
    verdict = "FAILED" if outcome.failed() else "passed"
    say(
        f"  placed {outcome.placed}, terminal {outcome.terminal}, lost {outcome.lost}, "
        f"double settled {outcome.double_settled}, negative balances "
        f"{outcome.negative_balances}, out of order {outcome.out_of_order}, stale leader "
        f"writes {outcome.stale_leader_writes}, event logs broken {outcome.event_log_broken}, "
        f"audit {'ok' if outcome.audit_ok else 'FAILED'}: {verdict}"
    )
    summary = {
        "placed": outcome.placed,
        "terminal": outcome.terminal,
        "lost": outcome.lost,
        "double_settled": outcome.double_settled,
        "negative_balances": outcome.negative_balances,
        "out_of_order": outcome.out_of_order,
        "stale_leader_writes": outcome.stale_leader_writes,
        "event_log_broken": outcome.event_log_broken,
        "faults": dict(sorted(runner.counts.items())),
        "max_failover_s": None if max_failover is None else round(max_failover, 3),
        "seed": seed,
    }
    say_last(json.dumps(summary))
    return summary
