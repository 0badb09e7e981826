"""Stand-ins for the collaborators the code under test is built with: the exchange, a
clock, shard leadership and the submitter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from execution.exchange_client import ExchangeRejectedRequest, OrderState, Quote


class Clock:
    """A monotonic clock the test moves by hand; call it as time.monotonic."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeExchange:
    """Quotes every ticker at 10.00 (None for `unlisted` ones); records each request."""

    def __init__(self, unlisted=()):
        self.asked: list[list[str]] = []
        self.unlisted = set(unlisted)

    def quotes(self, tickers):
        self.asked.append(list(tickers))
        now = datetime.now(UTC)
        return {
            t: None if t in self.unlisted else Quote(ticker=t, price=Decimal("10.00"), as_of=now)
            for t in tickers
        }


class SlowExchange(FakeExchange):
    """Answers after `seconds` of the test's clock."""

    def __init__(self, clock: Clock, seconds: float):
        super().__init__()
        self.clock = clock
        self.seconds = seconds

    def quotes(self, tickers):
        self.clock.advance(self.seconds)
        return super().quotes(tickers)


class RefusesBatchesWith(FakeExchange):
    """Raises `error` for every request that asks for `bad`."""

    def __init__(self, bad, error):
        super().__init__()
        self.bad = bad
        self.error = error

    def quotes(self, tickers):
        if self.bad in tickers:
            self.asked.append(list(tickers))
            raise self.error
        return super().quotes(tickers)


class RefusingExchange:
    """Answers every submission with a 400; `recorded` is what GET /orders says (or the
    error it raises)."""

    def __init__(self, recorded: OrderState | Exception | None):
        self.recorded = recorded

    def submit_order(self, order):
        raise ExchangeRejectedRequest("invalid_order", "bad price")

    def get_order(self, client_order_id):
        if isinstance(self.recorded, Exception):
            raise self.recorded
        return self.recorded


class FakeLeadership:
    """Leads the shards it is given, with their epochs, and takes no locks. `gains` and
    `losses` are what the next maintain() finds (then nothing); `maintained` records the
    clock at each maintain()."""

    def __init__(self, held: dict[int, int], clock: Clock | None = None):
        self.held = dict(held)
        self.clock = clock
        self.gains: list[int] = []
        self.losses: list[int] = []
        self.maintained: list[float | None] = []
        self.dropped: list[int] = []

    def epoch(self, shard):
        return self.held.get(shard)

    def maintain(self):
        self.maintained.append(self.clock() if self.clock else None)
        gained, lost = self.gains, self.losses
        self.gains, self.losses = [], []
        for shard in gained:
            self.held[shard] = self.held.get(shard, 0) + 1
        for shard in lost:
            self.held.pop(shard, None)
        return gained, lost

    def drop(self, shard):
        self.dropped.append(shard)
        self.held.pop(shard, None)

    def release_all(self):
        self.held.clear()


class RecordingSubmitter:
    """Keeps the orders it is handed instead of sending them."""

    def __init__(self):
        self.orders = []

    def submit(self, order):
        self.orders.append(order)

    def book_refusals(self):
        pass

    def close(self):
        pass
