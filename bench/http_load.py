"""Load through the HTTP API: POST /api/v1/trades/ (or, with api="v2", Alpaca's
/v2/orders) from many customers at once.

Cheap on CPU because it shares the machine with what it measures: stdlib http.client,
one connection per thread, tens of threads per process, a few processes (the GIL).
gunicorn's sync workers close the connection after every response; http.client then
reconnects by itself on the next request.

Two shapes:
- closed loop: every thread sends its next request as soon as the last one answered
  (the most the system can take with that many clients);
- open loop: requests are due at a fixed rate whatever happens, and latency is counted
  from when a request was due, not from when a free thread got round to it, so a slow
  system cannot hide its queue (no coordinated omission).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import random
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

PATH = {"v1": "/api/v1/trades/", "v2": "/v2/orders"}
# Open loop: enough threads per process that a slow answer does not hold up the next.
OPEN_LOOP_THREADS = 32
# An open loop stops sending this long after its end: a system far behind its schedule
# would otherwise keep the phase going for as long as its queue takes to work off.
GRACE = 10.0
NOT_SENT = -1
# One in SELL_EVERY requests of a customer who holds shares sells one of them.
SELL_EVERY = 5


@dataclass(frozen=True)
class Customer:
    token: str
    sell_ticker: str | None


@dataclass(frozen=True)
class Sample:
    """One request: wall-clock start (time.time()), the time it was due (open loop; the
    start otherwise), seconds until the response was read, HTTP status (0: no answer) and
    the trade id of a 201. /v2/ answers a placement 200, new or replayed; every key here is
    new, so its 200 is counted as the 201 it is. Status NOT_SENT: due, but given up on
    (the system fell so far behind that the request was still not sent GRACE seconds after
    the phase ended); its latency is how long it had waited then, a lower bound."""

    started: float
    due: float
    latency: float
    status: int
    trade_id: int


def _post(
    conn: http.client.HTTPConnection, customer: Customer, body: bytes, api: str
) -> tuple[int, int]:
    headers = {"Authorization": f"Token {customer.token}", "Content-Type": "application/json"}
    if api == "v2":
        headers = {
            "APCA-API-KEY-ID": customer.token[:12],
            "APCA-API-SECRET-KEY": customer.token,
            "Content-Type": "application/json",
        }
    conn.request("POST", PATH[api], body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    status = 201 if api == "v2" and response.status == 200 else response.status
    if status != 201:
        return status, 0
    trade_id = json.loads(data)["id"]
    return status, uuid.UUID(trade_id).int if api == "v2" else trade_id


def _body(customer: Customer, rng: random.Random, tickers: list[str], key: str, api: str) -> bytes:
    if customer.sell_ticker and rng.randrange(SELL_EVERY) == 0:
        ticker, side = customer.sell_ticker, "sell"
    else:
        ticker, side = rng.choice(tickers), "buy"
    if api == "v2":
        order = {"symbol": ticker, "side": side, "qty": "1", "type": "market"}
        return json.dumps({**order, "time_in_force": "day", "client_order_id": key}).encode()
    return json.dumps(
        {"ticker": ticker, "side": side, "quantity": 1, "client_order_id": key}
    ).encode()


def _drive(
    web_url: str,
    customers: list[Customer],
    tickers: list[str],
    threads: int,
    begin: float,
    end: float,
    rate: float | None,
    offset: int,
    stride: int,
    tag: str,
    api: str,
) -> list[Sample]:
    """One process: `threads` threads between `begin` and `end` (wall clock). Closed loop
    if `rate` is None; else request k of the global schedule is due at begin + k / rate
    and this process sends k = offset, offset + stride, ..."""
    parts = urlsplit(web_url)
    samples: list[Sample] = []
    lock = threading.Lock()
    schedule = iter(range(offset, 1 << 62, stride))

    def next_due() -> float:
        if rate is None:
            return time.time()
        with lock:
            k = next(schedule)
        return begin + k / rate

    def run(index: int) -> None:
        mine = customers[index::threads]
        rng = random.Random(f"{tag}-{index}")
        conn = http.client.HTTPConnection(parts.netloc, timeout=30)
        done: list[Sample] = []
        time.sleep(max(0.0, begin - time.time()))
        n = 0
        while True:
            due = next_due()
            if due >= end:
                break
            if (now := time.time()) > end + GRACE:
                # Its latency is at least what it has waited so far: count that.
                done.append(Sample(due, due, now - due, NOT_SENT, 0))
                continue
            time.sleep(max(0.0, due - time.time()))
            customer = mine[n % len(mine)]
            body = _body(customer, rng, tickers, f"{tag}-{index}-{n}", api)
            n += 1
            started = time.time()
            try:
                status, trade_id = _post(conn, customer, body, api)
            except (OSError, http.client.HTTPException):
                conn.close()
                status, trade_id = 0, 0
            finished = time.time()
            done.append(Sample(started, min(due, started), finished - due, status, trade_id))
        conn.close()
        with lock:
            samples.extend(done)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return samples


class LoadRun:
    """Load from `processes` processes in the background; `result()` waits for it."""

    def __init__(
        self,
        web_url: str,
        customers: list[Customer],
        tickers: list[str],
        *,
        processes: int,
        threads: int,
        seconds: float,
        rate: float | None = None,
        tag: str,
        start_in: float = 1.5,
        api: str = "v1",
    ) -> None:
        if len(customers) < processes * threads:
            raise ValueError(f"{processes * threads} clients need as many customers at least")
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(processes, mp_context=context)
        self.begin = time.time() + start_in
        self.end = self.begin + seconds
        self._futures = [
            self._pool.submit(
                _drive,
                web_url,
                customers[p::processes],
                tickers,
                threads,
                self.begin,
                self.end,
                rate,
                p,
                processes,
                f"{tag}{p}",
                api,
            )
            for p in range(processes)
        ]

    def done(self) -> bool:
        """Every process has finished."""
        return all(f.done() for f in self._futures)

    def result(self) -> list[Sample]:
        """Every request's sample, in the order they started."""
        try:
            return sorted((s for f in self._futures for s in f.result()), key=lambda s: s.started)
        finally:
            self._pool.shutdown()
