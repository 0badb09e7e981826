"""Re-driving work nobody is handling. Each function does one kind of repair, reports
what it did, and is safe to run at any time and any number of times: everything it
changes goes through the same services as the normal path."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from execution.exchange_client import (
    ExchangeClient,
    ExchangeError,
    ExchangeRejectedRequest,
    ExchangeUnavailable,
)
from execution.in_flight import order_request_for
from execution.refusals import refusal_report
from execution.settlement import ReportMismatch, SettleOutcome, trade_settle
from outbox.connections import session_failed
from outbox.services import outbox_enqueue, renotify_stale_outbox
from trades.models import Trade
from trades.sql import OPEN_STATUSES
from trades.timeline import trade_error_record

logger = logging.getLogger("execution.reaper")

# Customers whose oldest open trade is placed, old, and who have no outbox row.
_ORPHANED_CUSTOMERS_SQL = f"""
SELECT head.customer_id, a.shard FROM (
    SELECT DISTINCT ON (customer_id) customer_id, status, created_at
    FROM trades_trade WHERE status IN {OPEN_STATUSES}
    ORDER BY customer_id, seq
) AS head
JOIN balances_account a ON a.customer_id = head.customer_id
WHERE head.status = '{Trade.Status.PLACED}' AND head.created_at < %s
  AND NOT EXISTS (SELECT 1 FROM outbox_outboxmessage o WHERE o.customer_id = head.customer_id)
LIMIT %s
"""


@dataclass
class ReapReport:
    requeued: int = 0
    settled: int = 0
    resubmitted: int = 0
    renotified_shards: int = 0
    errors: list[str] = field(default_factory=list)
    # In-flight trades this pass could not resolve (the caller may skip them for a while).
    failed: list[int] = field(default_factory=list)
    # In-flight trades the exchange said were still open (no use asking again at once).
    open: list[int] = field(default_factory=list)
    # The pass stopped asking about trades in flight: the exchange was unreachable.
    exchange_unavailable: bool = False
    # The pass stopped because this reaper was no longer the active one.
    interrupted: bool = False

    def found_work(self) -> bool:
        return bool(self.requeued or self.settled or self.resubmitted or self.renotified_shards)


def reap_orphaned_placed_trades(*, older_than: timedelta, limit: int = 500) -> int:
    """Give an outbox row to every customer whose next trade is placed but who has none
    (e.g. a wake-up whose row was lost to a bug or a manual delete). One transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ORPHANED_CUSTOMERS_SQL, [timezone.now() - older_than, limit])
        rows = cursor.fetchall()
        for customer_id, shard in rows:
            outbox_enqueue(customer_id=customer_id, shard=shard)
            logger.info("event=reaper_requeued customer=%s shard=%s", customer_id, shard)
    return len(rows)


def reap_trades_in_flight(
    *,
    client: ExchangeClient,
    older_than: timedelta,
    limit: int = 200,
    report: ReapReport,
    skip: Collection[int] = (),
    still_active: Callable[[], bool] = lambda: True,
) -> None:
    """Ask the exchange about trades in flight for longer than `older_than` (but those in
    `skip`): settle the ones it has finished (through the callback's settlement), re-send
    the ones it never got (idempotent by trade id), and leave the open ones. A trade that
    cannot be resolved is logged and listed in `report.failed`, and the pass goes on: one
    bad report must not hold up every other repair. Stops between trades once
    `still_active()` is false (the reaper lost its lock: another one is active now)."""
    deadline = timezone.now() - older_than
    trades = list(
        Trade.objects.filter(status=Trade.Status.IN_PROGRESS, submitted_at__lt=deadline)
        .exclude(id__in=list(skip))
        .order_by("submitted_at")[:limit]
    )
    for trade in trades:
        if not still_active():
            report.interrupted = True
            logger.warning("event=reaper_pass_interrupted reason=lock_lost")
            return
        try:
            _reap_in_flight(trade, client, report)
        except ExchangeUnavailable as exc:
            report.exchange_unavailable = True
            report.errors.append(f"exchange unavailable: {exc!r}")
            logger.warning("event=reaper_exchange_unavailable error=%r", exc)
            return  # one pass must not spend minutes timing out trade after trade
        except (ExchangeError, ReportMismatch) as exc:
            report.errors.append(f"trade {trade.id}: {exc!r}")
            report.failed.append(trade.id)
            logger.warning("event=reaper_error trade=%s error=%r", trade.id, exc)
            trade_error_record(trade_id=trade.id, detail=f"reaper: {exc}")
        except Exception as exc:
            if session_failed(exc):
                raise
            report.errors.append(f"trade {trade.id}: {exc!r}")
            report.failed.append(trade.id)
            logger.exception("event=reaper_failed trade=%s", trade.id)


def _reap_in_flight(trade: Trade, client: ExchangeClient, report: ReapReport) -> None:
    state = client.get_order(str(trade.id))
    if state is None:
        # Settled meanwhile (e.g. the exchange refused the order outright)?
        if not Trade.objects.filter(id=trade.id, status=Trade.Status.IN_PROGRESS).exists():
            return
        request = order_request_for(trade)
        try:
            client.submit_order(request)
        except ExchangeRejectedRequest as exc:
            state = refusal_report(client, request, exc)
        else:
            report.resubmitted += 1
            logger.info(
                "event=reaper_resubmitted trade=%s customer=%s", trade.id, trade.customer_id
            )
            return
    outcome = trade_settle(report=state)
    if outcome is SettleOutcome.SETTLED:
        report.settled += 1
        logger.info(
            "event=reaper_settled trade=%s customer=%s status=%s",
            trade.id,
            trade.customer_id,
            state.status,
        )
    elif outcome is SettleOutcome.STILL_OPEN:
        report.open.append(trade.id)


class UnresolvedTrades:
    """In-flight trades the reaper leaves alone for a while: those it could not resolve
    (`retry_after` seconds), and those the exchange still had open (as long as the caller
    says, e.g. another in-flight deadline). Each pass looks at a limited number of the
    oldest trades in flight, so without this a few unresolvable ones, or a backlog of open
    orders, at the head of the queue would hide every lost submission behind them."""

    def __init__(self, retry_after: float = 60.0) -> None:
        self.retry_after = retry_after
        self._until: dict[int, float] = {}

    def to_skip(self) -> list[int]:
        now = time.monotonic()
        self._until = {trade: until for trade, until in self._until.items() if until > now}
        return list(self._until)

    def note(self, trade_ids: Iterable[int], *, seconds: float | None = None) -> None:
        until = time.monotonic() + (self.retry_after if seconds is None else seconds)
        self._until.update(dict.fromkeys(trade_ids, until))


def reap_once(
    *,
    client: ExchangeClient,
    placed_stale: timedelta,
    in_flight_deadline: timedelta,
    outbox_stale: timedelta,
    skip: Collection[int] = (),
    still_active: Callable[[], bool] = lambda: True,
) -> ReapReport:
    """One pass of every repair; `skip`: in-flight trades to leave alone this time. Ends
    early, between repairs, once `still_active()` is false."""
    report = ReapReport()
    report.requeued = reap_orphaned_placed_trades(older_than=placed_stale)
    reap_trades_in_flight(
        client=client,
        older_than=in_flight_deadline,
        report=report,
        skip=skip,
        still_active=still_active,
    )
    if not report.interrupted:
        report.renotified_shards = renotify_stale_outbox(older_than=outbox_stale)
    return report
