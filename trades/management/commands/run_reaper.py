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
from trades.reaper import reap_once

logger = logging.getLogger("trades.reaper")

# An in-flight trade the reaper could not resolve is left alone this long, so that a few
# unresolvable ones at the head of the queue never hold up the repairs behind them.
UNRESOLVED_RETRY_SECONDS = 60.0


class Command(BaseCommand):
    help = "Find and re-drive work nobody is handling. One reaper is active at a time."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=settings.REAPER_INTERVAL)
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, interval: float, once: bool, **options) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        name = f"reaper {socket.gethostname()}:{os.getpid()}"
        # Leadership of the single "shard" 0 in the reaper's own lock namespace.
        leadership = ShardLeadership(
            shards=[0], holder=name, namespace=REAPER_LOCK_NAMESPACE, leases=False
        )
        client = exchange_client_factory()
        self._unresolved: dict[int, float] = {}
        try:
            while not stop.is_set():
                leadership.maintain()
                if leadership.held:
                    completed = self._pass(client)
                    if once:
                        if not completed:
                            raise CommandError("the pass ended on a database error (see the log)")
                        return
                elif once:
                    raise CommandError("another reaper is active")
                stop.wait(interval)
        finally:
            leadership.release_all()

    def _pass(self, client) -> bool:
        """One pass of every repair; False if a database error ended it early."""
        now = time.monotonic()
        self._unresolved = {t: until for t, until in self._unresolved.items() if until > now}
        try:
            report = reap_once(
                client=client,
                placed_stale=timedelta(seconds=settings.REAPER_PLACED_STALE_SECONDS),
                in_flight_deadline=timedelta(seconds=settings.REAPER_IN_FLIGHT_DEADLINE),
                outbox_stale=timedelta(seconds=settings.REAPER_OUTBOX_STALE_SECONDS),
                skip=self._unresolved.keys(),
            )
        except DatabaseError as exc:
            logger.warning("event=database_error reaper error=%r", exc)  # retried next pass
            connection.close()
            return False
        for trade_id in report.failed:
            self._unresolved[trade_id] = now + UNRESOLVED_RETRY_SECONDS
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
        return True
