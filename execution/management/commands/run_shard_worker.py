import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokerage.metrics import (
    WORKER_LOCK_CHECK_AGE_SECONDS,
    WORKER_SHARDS_LED,
    WORKER_SUBMIT_QUEUE,
    serve_metrics,
)
from execution.exchange import quote_client
from execution.quotes import QuoteBook
from execution.sender import TradeSender
from execution.submitter import Submitter
from outbox.connections import configure_django_sessions, default_process_name
from outbox.leadership import ShardLeadership
from outbox.relay import ShardRelay
from outbox.sharding import parse_shards


class Command(BaseCommand):
    help = "Lead (or stand by for) some shards and send their customers' trades to the exchange."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shards", default="all", help="all | 0-31,40 | K/N")
        parser.add_argument("--name", default=None, help="Shown in logs and in the lease table.")
        parser.add_argument("--poll-interval", type=float, default=settings.WORKER_POLL_INTERVAL)
        parser.add_argument(
            "--lock-retry-interval", type=float, default=settings.WORKER_LOCK_RETRY_INTERVAL
        )
        parser.add_argument("--submit-threads", type=int, default=8)
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.METRICS_PORT,
            help="Serve Prometheus metrics on this port (0: none); METRICS_PORT by default.",
        )

    def handle(
        self,
        *args: object,
        shards: str,
        name: str | None,
        poll_interval: float,
        lock_retry_interval: float,
        submit_threads: int,
        metrics_port: int,
        **options: object,
    ) -> None:
        try:
            shard_list = parse_shards(shards, settings.SHARD_COUNT)
        except ValueError as exc:
            raise CommandError(f"--shards {shards}: {exc}") from None
        if submit_threads < 1:
            raise CommandError("--submit-threads: at least 1")
        if poll_interval <= 0 or lock_retry_interval <= 0:
            raise CommandError("--poll-interval and --lock-retry-interval: above 0")
        name = name or default_process_name()
        if metrics_port:
            try:
                serve_metrics(metrics_port, settings.METRICS_ADDRESS)
            except OSError as exc:
                raise CommandError(f"--metrics-port {metrics_port}: {exc}") from None
        # A standby deposing this worker, should it freeze, ends this session by its name;
        # a lock held elsewhere must not keep this leader from its heartbeat for long.
        configure_django_sessions(f"worker {name}", lock_timeout="2s")
        sender = TradeSender(
            name=name,
            quotes=QuoteBook(quote_client(), settings.QUOTE_MAX_AGE),
            submitter=Submitter(threads=submit_threads),
        )
        leadership = ShardLeadership(
            shards=shard_list, holder=name, lease_timeout=settings.WORKER_LEASE_TIMEOUT
        )
        worker = ShardRelay(
            shards=shard_list,
            name=name,
            handler=sender,
            poll_interval=poll_interval,
            lock_retry_interval=lock_retry_interval,
            leadership=leadership,
        )
        WORKER_SHARDS_LED.labels(name).set_function(lambda: len(leadership.held))
        WORKER_LOCK_CHECK_AGE_SECONDS.labels(name).set_function(
            lambda: time.monotonic() - leadership.last_maintained
        )
        WORKER_SUBMIT_QUEUE.labels(name).set_function(sender.submitter.pending)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        worker.run()
