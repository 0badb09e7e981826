import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from outbox.leadership import REAPER_LOCK_NAMESPACE, ShardLeadership
from outbox.worker import exchange_client_factory
from trades.exchange_client import ExchangeClient
from trades.reaper import UnresolvedTrades, reap_once

logger = logging.getLogger("trades.reaper")

ANOTHER_REAPER_ACTIVE = "another reaper is active"
PASS_ENDED_EARLY = "the pass ended early: database or exchange unreachable (see the log)"
# How often the reaper checks its lock between passes. The check is its heartbeat: a
# standby ends the lock session of a reaper that has not checked for REAPER_LEASE_TIMEOUT.
LOCK_CHECK_SECONDS = 1.0


class Command(BaseCommand):
    help = "Find and re-drive work nobody is handling. One reaper is active at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=settings.REAPER_INTERVAL)
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, interval: float, once: bool, **options) -> None:
        if not interval > 0:
            raise CommandError("--interval: above 0")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        name = f"reaper {socket.gethostname()}:{os.getpid()}"
        # Leadership of the single "shard" 0 in the reaper's own lock namespace.
        leadership = ShardLeadership(
            shards=[0],
            holder=name,
            namespace=REAPER_LOCK_NAMESPACE,
            leases=False,
            lease_timeout=settings.REAPER_LEASE_TIMEOUT,
        )
        client = exchange_client_factory()
        self._unresolved = UnresolvedTrades()
        next_pass = 0.0
        try:
            while not stop.is_set():
                leadership.maintain()
                if once:
                    if not leadership.held:
                        raise CommandError(ANOTHER_REAPER_ACTIVE)
                    if not self._pass(client):
                        raise CommandError(PASS_ENDED_EARLY)
                    return
                if leadership.held and time.monotonic() >= next_pass:
                    self._pass(client)
                    next_pass = time.monotonic() + interval
                stop.wait(min(interval, LOCK_CHECK_SECONDS))
        finally:
            leadership.release_all()

    def _pass(self, client: ExchangeClient) -> bool:
        """One pass of every repair; False if it ended early (database or exchange down)."""
        try:
            report = reap_once(
                client=client,
                placed_stale=timedelta(seconds=settings.REAPER_PLACED_STALE_SECONDS),
                in_flight_deadline=timedelta(seconds=settings.REAPER_IN_FLIGHT_DEADLINE),
                outbox_stale=timedelta(seconds=settings.REAPER_OUTBOX_STALE_SECONDS),
                skip=self._unresolved.to_skip(),
            )
        except DatabaseError as exc:
            logger.warning("event=database_error reaper error=%r", exc)  # retried next pass
            connection.close()
            return False
        self._unresolved.note(report.failed)
        if report.found_work() or report.errors:
            logger.info(
                "event=reaper_pass requeued=%d settled=%d resubmitted=%d still_open=%d "
                "renotified_shards=%d errors=%d",
                report.requeued,
                report.settled,
                report.resubmitted,
                report.still_open,
                report.renotified_shards,
                len(report.errors),
            )
        return not report.exchange_unavailable
