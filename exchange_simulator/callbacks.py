"""At-least-once delivery of signed order callbacks (Standard Webhooks), with fault injection."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from math import floor
from typing import Any

import urllib3
from standardwebhooks.webhooks import Webhook

from exchange_simulator.faults import FaultConfig
from exchange_simulator.market import SharedRandom
from exchange_simulator.scheduler import Scheduler
from exchange_simulator.stats import Stats

log = logging.getLogger("exchange_simulator")

# Upper bound of the random hold-back applied by --reorder-rate.
REORDER_MAX_SECONDS = 0.5
# How long after the original the --duplicate-rate copy starts.
DUPLICATE_GAP_SECONDS = (0.005, 0.05)


def signing_secret(secrets: str) -> str:
    """The first of several space-separated secrets, checked to be usable."""
    parts = secrets.split()
    if not parts:
        raise ValueError("webhook secret is empty")
    Webhook(parts[0])  # raises on a secret that is not valid base64 or is empty
    return parts[0]


@dataclass
class _Delivery:
    """One copy of one callback, retried until a 2xx or until it is abandoned."""

    msg_id: str
    url: str
    body: str
    client_order_id: str
    copy: int
    drop_next: bool
    attempts: int = 0
    failures: int = 0
    first_attempt_at: float | None = None


class CallbackDispatcher:
    def __init__(
        self,
        *,
        secret: str,
        scheduler: Scheduler,
        rng: SharedRandom,
        stats: Stats,
        faults: Callable[[], FaultConfig],
        on_delivered: Callable[[str, datetime], None],
        workers: int = 8,
        connect_timeout: float = 1.0,
        read_timeout: float = 5.0,
        initial_backoff: float = 0.05,
        max_backoff: float = 2.0,
        give_up_after: float = 600.0,
    ) -> None:
        self._webhook = Webhook(signing_secret(secret))
        self._scheduler = scheduler
        self._rng = rng
        self._stats = stats
        self._faults = faults
        self._on_delivered = on_delivered
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._give_up_after = give_up_after
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-callback")
        self._local = threading.local()
        self._pools: list[urllib3.PoolManager] = []
        self._pools_lock = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._pools_lock:
            for pool in self._pools:
                pool.clear()

    def dispatch(
        self,
        *,
        client_order_id: str,
        exchange_order_id: str,
        callback_url: str,
        event_type: str,
        timestamp: datetime,
        data: dict[str, Any],
    ) -> None:
        """Schedule delivery of one callback, applying the current fault switches."""
        faults = self._faults()
        if self._rng.chance(faults.no_callback_rate):
            self._stats.incr("callbacks_suppressed")
            log.info("event=callback_suppressed client_order_id=%s", client_order_id)
            return
        body = json.dumps(
            {"type": event_type, "timestamp": timestamp.isoformat(), "data": data},
            separators=(",", ":"),
        )
        delay = faults.callback_delay_ms / 1000
        if self._rng.chance(faults.reorder_rate):
            delay += self._rng.uniform(0.0, REORDER_MAX_SECONDS)
        delivery = _Delivery(
            msg_id=f"msg_{exchange_order_id}",
            url=callback_url,
            body=body,
            client_order_id=client_order_id,
            copy=1,
            drop_next=self._rng.chance(faults.lose_first_rate),
        )
        self._stats.incr("callbacks_pending")
        self._scheduler.call_later(delay, lambda: self._submit(delivery))
        if self._rng.chance(faults.duplicate_rate):
            twin = _Delivery(
                msg_id=delivery.msg_id,
                url=callback_url,
                body=body,
                client_order_id=client_order_id,
                copy=2,
                drop_next=False,
            )
            self._stats.incr("callbacks_duplicated")
            self._stats.incr("callbacks_pending")
            gap = self._rng.uniform(*DUPLICATE_GAP_SECONDS)
            self._scheduler.call_later(delay + gap, lambda: self._submit(twin))

    def _submit(self, delivery: _Delivery) -> None:
        # Runs on the scheduler thread: hand the network I/O to the pool.
        if self._stopped:
            return
        try:
            self._pool.submit(self._attempt, delivery)
        except RuntimeError:
            pass  # pool already shut down

    def _http(self) -> urllib3.PoolManager:
        # One keep-alive pool per worker thread. Plain urllib3 (what requests is built on):
        # requests' per-call overhead nearly doubled the simulator's CPU per order at 500/s.
        # A PoolManager never reads proxy settings from the environment, as wanted here.
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = urllib3.PoolManager(maxsize=1, retries=False)
            self._local.pool = pool
            with self._pools_lock:
                self._pools.append(pool)
        return pool

    def _attempt(self, delivery: _Delivery) -> None:
        if self._stopped:
            return
        if delivery.first_attempt_at is None:
            delivery.first_attempt_at = time.monotonic()
        delivery.attempts += 1
        self._stats.incr("callbacks_attempted")
        if delivery.drop_next:
            delivery.drop_next = False
            self._stats.incr("callbacks_dropped")
            log.info(
                "event=callback_dropped client_order_id=%s msg_id=%s attempt=%d",
                delivery.client_order_id,
                delivery.msg_id,
                delivery.attempts,
            )
            self._retry(delivery)
            return
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.msg_id,
            "webhook-timestamp": str(floor(now.timestamp())),
            "webhook-signature": self._webhook.sign(delivery.msg_id, now, delivery.body),
        }
        try:
            response = self._http().request(
                "POST",
                delivery.url,
                body=delivery.body.encode(),
                headers=headers,
                timeout=self._timeout,
                redirect=False,
            )
            outcome = str(response.status)
            ok = 200 <= response.status < 300
        except Exception as exc:  # any failure is just a failed attempt; the chain must go on
            outcome = type(exc).__name__
            ok = False
        if self._stopped:
            return
        if ok:
            self._stats.incr("callbacks_delivered")
            self._stats.incr("callbacks_pending", -1)
            self._on_delivered(delivery.client_order_id, datetime.now(UTC))
            log.info(
                "event=callback_delivered client_order_id=%s msg_id=%s attempt=%d copy=%d "
                "status=%s",
                delivery.client_order_id,
                delivery.msg_id,
                delivery.attempts,
                delivery.copy,
                outcome,
            )
            return
        self._stats.incr("callbacks_failed")
        log.info(
            "event=callback_failed client_order_id=%s msg_id=%s attempt=%d copy=%d outcome=%s",
            delivery.client_order_id,
            delivery.msg_id,
            delivery.attempts,
            delivery.copy,
            outcome,
        )
        self._retry(delivery)

    def _retry(self, delivery: _Delivery) -> None:
        assert delivery.first_attempt_at is not None
        if time.monotonic() - delivery.first_attempt_at >= self._give_up_after:
            self._stats.incr("callbacks_abandoned")
            self._stats.incr("callbacks_pending", -1)
            log.warning(
                "event=callback_abandoned client_order_id=%s msg_id=%s attempts=%d",
                delivery.client_order_id,
                delivery.msg_id,
                delivery.attempts,
            )
            return
        backoff = min(self._initial_backoff * 2 ** min(delivery.failures, 30), self._max_backoff)
        delivery.failures += 1
        self._scheduler.call_later(backoff, lambda: self._submit(delivery))
