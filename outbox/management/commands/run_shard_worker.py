import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox.connections import configure_django_sessions, default_process_name
from outbox.worker import ShardWorker


def parse_shards(text: str, shard_count: int) -> list[int]:
    """`all`, a list of numbers and ranges (`0-31,40`), or a part `K/N` (the K-th of N
    equal slices, counting from 1)."""
    if text == "all":
        return list(range(shard_count))
    if "/" in text:
        part, _, parts = text.partition("/")
        k, n = int(part), int(parts)
        if not 1 <= k <= n <= shard_count:
            raise CommandError(f"--shards {text}: want K/N with 1 <= K <= N <= {shard_count}")
        return [s for s in range(shard_count) if s * n // shard_count == k - 1]
    shards: set[int] = set()
    for item in text.split(","):
        low, _, high = item.partition("-")
        first, last = int(low), int(high or low)
        shards.update(range(first, last + 1))
    if not shards or min(shards) < 0 or max(shards) >= shard_count:
        raise CommandError(f"--shards {text}: shards are 0 to {shard_count - 1}")
    return sorted(shards)


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

    def handle(
        self,
        *args: object,
        shards: str,
        name: str | None,
        poll_interval: float,
        lock_retry_interval: float,
        submit_threads: int,
        **options: object,
    ) -> None:
        try:
            shard_list = parse_shards(shards, settings.SHARD_COUNT)
        except ValueError as exc:
            raise CommandError(f"--shards: {exc}") from None
        if submit_threads < 1:
            raise CommandError("--submit-threads: at least 1")
        if poll_interval <= 0 or lock_retry_interval <= 0:
            raise CommandError("--poll-interval and --lock-retry-interval: above 0")
        name = name or default_process_name()
        # A standby deposing this worker, should it freeze, ends this session by its name;
        # a lock held elsewhere must not keep this leader from its heartbeat for long.
        configure_django_sessions(f"worker {name}", lock_timeout="2s")
        worker = ShardWorker(
            shards=shard_list,
            name=name,
            poll_interval=poll_interval,
            lock_retry_interval=lock_retry_interval,
            quote_max_age=settings.QUOTE_MAX_AGE,
            lease_timeout=settings.WORKER_LEASE_TIMEOUT,
            submit_threads=submit_threads,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        worker.run()
