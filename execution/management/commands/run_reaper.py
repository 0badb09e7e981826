import logging
import math
import signal
import threading
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from brokerage.metrics import (
    DATABASE_ERRORS,
    REAPER_LOCK_HELD,
    REAPER_PASSES,
    REAPER_REPAIRS,
    serve_metrics,
)
from execution.exchange import exchange_client
from execution.exchange_client import ExchangeClient
from execution.reaper import UnresolvedTrades, reap_once
from outbox.connections import default_process_name
from outbox.leadership import REAPER_LOCK_NAMESPACE, SingleActiveLock

logger = logging.getLogger("execution.reaper")

ANOTHER_REAPER_ACTIVE = "another reaper is active"
PASS_ENDED_EARLY = (
    "the pass ended early: database or exchange unreachable, or the lock lost (see the log)"
)


class Command(BaseCommand):
    help = "Find and re-drive work nobody is handling. One reaper is active at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=settings.REAPER_INTERVAL)
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.METRICS_PORT,
            help="Serve Prometheus metrics on this port (0: none; never with --once); "
            "METRICS_PORT by default.",
        )

    def handle(
        self, *args: object, interval: float, once: bool, metrics_port: int, **options: object
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise CommandError("--interval: a number of seconds above 0")
        if metrics_port and not once:
            try:
                serve_metrics(metrics_port, settings.METRICS_ADDRESS)
            except OSError as exc:
                raise CommandError(f"--metrics-port {metrics_port}: {exc}") from None
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        lock = SingleActiveLock(
            namespace=REAPER_LOCK_NAMESPACE,
            holder=f"reaper {default_process_name()}",
            # A one-off pass never deposes the active reaper, frozen or not.
            lease_timeout=None if once else settings.REAPER_LEASE_TIMEOUT,
        )
        REAPER_LOCK_HELD.labels(lock.holder).set_function(lambda: 1 if lock.active else 0)
        client = exchange_client()
        self._unresolved = UnresolvedTrades()
        lock.start()
        try:
            if once:
                if not lock.active:
                    raise CommandError(ANOTHER_REAPER_ACTIVE)
                if not self._pass(client, lock):
                    raise CommandError(PASS_ENDED_EARLY)
                return
            while not stop.is_set():
                if lock.active:
                    self._pass(client, lock)
                stop.wait(interval)
        finally:
            lock.close()

    def _pass(self, client: ExchangeClient, lock: SingleActiveLock) -> bool:
        """One pass of every repair; False if it ended early (database or exchange down)."""
        try:
            report = reap_once(
                client=client,
                placed_stale=timedelta(seconds=settings.REAPER_PLACED_STALE_SECONDS),
                in_flight_deadline=timedelta(seconds=settings.REAPER_IN_FLIGHT_DEADLINE),
                outbox_stale=timedelta(seconds=settings.REAPER_OUTBOX_STALE_SECONDS),
                skip=self._unresolved.to_skip(),
                still_active=lambda: lock.active,
            )
        except DatabaseError as exc:
            logger.warning("event=database_error reaper error=%r", exc)  # retried next pass
            DATABASE_ERRORS.labels(where="reaper").inc()
            REAPER_PASSES.labels(outcome="database_error").inc()
            connection.close()
            return False
        self._unresolved.note(report.failed)
        self._unresolved.note(report.open, seconds=settings.REAPER_IN_FLIGHT_DEADLINE)
        if report.found_work() or report.errors:
            logger.info(
                "event=reaper_pass requeued=%d settled=%d resubmitted=%d still_open=%d "
                "renotified_shards=%d errors=%d",
                report.requeued,
                report.settled,
                report.resubmitted,
                len(report.open),
                report.renotified_shards,
                len(report.errors),
            )
        for kind, count in (
            ("requeued", report.requeued),
            ("settled", report.settled),
            ("resubmitted", report.resubmitted),
            ("renotified_shard", report.renotified_shards),
        ):
            if count:
                REAPER_REPAIRS.labels(kind=kind).inc(count)
        complete = not (report.exchange_unavailable or report.interrupted)
        REAPER_PASSES.labels(outcome="complete" if complete else "ended_early").inc()
        return complete
