"""Sending orders to the exchange, on a small pool of threads of their own, so that a slow
exchange never holds up the leader's loop."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError

from execution.exchange import exchange_client
from execution.exchange_client import (
    ExchangeClient,
    ExchangeError,
    ExchangeRejectedRequest,
    OrderRequest,
    OrderState,
)
from execution.refusals import refusal_report
from execution.settlement import ReportMismatch, trade_settle
from trades.timeline import trade_error_record

logger = logging.getLogger("execution.submitter")


class Submitter:
    """Each order is sent once, on a submit thread. A failure is left to the reaper, which
    finds the trade in flight past its deadline and re-sends it (idempotently). The
    report of an order the exchange refused (see execution.refusals) is settled on the
    caller's thread, in `book_refusals`: the submit threads never touch the database."""

    def __init__(
        self, *, threads: int = 8, make_client: Callable[[], ExchangeClient] = exchange_client
    ) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="submit")
        self._make_client = make_client
        self._local = threading.local()
        self._refusals: queue.SimpleQueue[OrderState] = queue.SimpleQueue()
        # (trade id, what went wrong) for the trade's timeline, written on the caller's thread.
        self._errors: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Lock()

    def submit(self, order: OrderRequest) -> None:
        with self._pending_lock:
            self._pending += 1
        self._pool.submit(self._send, order)

    def pending(self) -> int:
        """Orders submitted and not yet answered (sent, refused or failed)."""
        return self._pending

    def book_refusals(self) -> None:
        """Settle the refused orders' reports, and put the failed sends on their trades'
        timelines. On a database error what is left is kept for the next call, and the
        error raised; a report that disagrees with the order is left to the reaper."""
        while True:
            try:
                trade_id, detail = self._errors.get_nowait()
            except queue.Empty:
                break
            try:
                trade_error_record(trade_id=trade_id, detail=detail)
            except DatabaseError:
                self._errors.put((trade_id, detail))
                raise
        while True:
            try:
                report = self._refusals.get_nowait()
            except queue.Empty:
                return
            try:
                trade_settle(report=report)
            except DatabaseError:
                self._refusals.put(report)
                raise
            except ReportMismatch as exc:
                logger.error(
                    "event=refusal_mismatch trade=%s error=%r", report.client_order_id, exc
                )
                self._errors.put((int(report.client_order_id), f"refusal mismatch: {exc}"))

    def close(self) -> None:
        """Wait for the orders under way, then book their refusals."""
        self._pool.shutdown(wait=True)
        self.book_refusals()

    def _client(self) -> ExchangeClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make_client()
        return client

    def _send(self, order: OrderRequest) -> None:
        try:
            self._send_once(order)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _send_once(self, order: OrderRequest) -> None:
        try:
            result = self._client().submit_order(order)
            logger.info(
                "event=order_submitted trade=%s customer=%s exchange_order=%s",
                order.client_order_id,
                order.account_id,
                result.exchange_order_id,
            )
        except ExchangeRejectedRequest as exc:
            self._refused(order, exc)
        except ExchangeError as exc:
            logger.warning(
                "event=submit_failed trade=%s customer=%s error=%r",
                order.client_order_id,
                order.account_id,
                exc,
            )
            self._errors.put((int(order.client_order_id), f"submit failed: {exc}"))
        except Exception:
            logger.exception("event=submit_crashed trade=%s", order.client_order_id)

    def _refused(self, order: OrderRequest, refusal: ExchangeRejectedRequest) -> None:
        try:
            report = refusal_report(self._client(), order, refusal)
        except ExchangeError as exc:
            logger.warning(
                "event=refusal_unconfirmed trade=%s error=%r", order.client_order_id, exc
            )
            self._errors.put(
                (int(order.client_order_id), f"refused ({refusal.detail}), unconfirmed: {exc}")
            )
            return  # the reaper asks again past the deadline
        self._refusals.put(report)
