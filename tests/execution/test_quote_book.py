"""A leader's quote book: batched asks, ageing, unlisted tickers."""

from decimal import Decimal

import pytest

from execution.exchange_client import ExchangeError, ExchangeUnavailable
from execution.quotes import REFUSED_QUOTE_SECONDS, QuoteBook
from tests.fakes import Clock, FakeExchange, RefusesBatchesWith, SlowExchange


@pytest.fixture
def clock():
    return Clock()


def test_a_missing_ticker_is_asked_for_with_the_quotes_about_to_expire(clock):
    exchange = FakeExchange()
    book = QuoteBook(exchange, max_age=1.0, clock=clock)

    book.fetch("AAPL")
    clock.advance(0.5)
    book.fetch("MSFT")  # AAPL is still young: not asked again
    clock.advance(0.3)
    book.fetch("GOOG")  # AAPL (0.8 s) and MSFT (0.3 s): only AAPL is past 3/4 of its age

    assert exchange.asked == [["AAPL"], ["MSFT"], ["GOOG", "AAPL"]]
    assert dict(book) == {t: Decimal("10.00") for t in ("AAPL", "MSFT", "GOOG")}


def test_a_quote_older_than_max_age_is_gone(clock):
    book = QuoteBook(FakeExchange(), max_age=1.0, clock=clock)
    book.fetch("AAPL")

    clock.advance(1.01)

    assert "AAPL" not in book
    assert len(book) == 0


def test_an_unlisted_ticker_is_known_as_none(clock):
    book = QuoteBook(FakeExchange(unlisted={"ZZZZ"}), max_age=1.0, clock=clock)

    book.fetch("ZZZZ")

    assert "ZZZZ" in book
    assert book["ZZZZ"] is None


def test_one_ask_never_exceeds_the_exchange_limit(clock):
    exchange = FakeExchange()
    book = QuoteBook(exchange, max_age=1.0, max_per_request=3, clock=clock)
    for ticker in ("A", "B", "C", "D"):
        book.fetch(ticker)
    clock.advance(0.9)

    book.fetch("E")

    assert exchange.asked[-1] == ["E", "A", "B"]


def test_a_ticker_that_spoils_its_batch_holds_up_only_its_own_trades(clock):
    exchange = RefusesBatchesWith("ODD", ExchangeError("malformed quotes"))
    book = QuoteBook(exchange, max_age=1.0, clock=clock)
    exchange.bad = None
    book.fetch("ODD")  # quoted once, while the exchange still answered for it
    exchange.bad = "ODD"
    clock.advance(0.9)

    book.fetch("AAPL")

    assert exchange.asked[-2:] == [["AAPL", "ODD"], ["AAPL"]]
    assert book["AAPL"] == Decimal("10.00")
    with pytest.raises(ExchangeError):
        book.fetch("ODD")


def test_an_unreachable_exchange_is_not_asked_twice(clock):
    exchange = RefusesBatchesWith("AAPL", ExchangeUnavailable("down"))
    book = QuoteBook(exchange, max_age=1.0, clock=clock)

    with pytest.raises(ExchangeUnavailable):
        book.fetch("AAPL")

    assert exchange.asked == [["AAPL"]]


def test_a_quote_is_dated_when_its_answer_arrives(clock):
    book = QuoteBook(SlowExchange(clock, seconds=1.1), max_age=1.0, clock=clock)

    answer = book.fetch("AAPL")

    assert answer == {"AAPL": Decimal("10.00")}
    assert book["AAPL"] == Decimal("10.00")  # an answer slower than max_age is not stale


def test_with_max_age_zero_every_answer_is_used_once_and_never_kept(clock):
    book = QuoteBook(FakeExchange(), max_age=0.0, clock=clock)

    assert book.fetch("AAPL") == {"AAPL": Decimal("10.00")}
    clock.advance(0.001)
    assert "AAPL" not in book


def test_a_ticker_refused_alone_is_not_asked_for_again_for_a_while(clock):
    exchange = RefusesBatchesWith(None, ExchangeError("malformed quotes"))
    book = QuoteBook(exchange, max_age=1.0, clock=clock)
    book.fetch("ODD")
    exchange.bad = "ODD"
    clock.advance(0.9)
    with pytest.raises(ExchangeError):
        book.fetch("ODD")

    book.fetch("AAPL")  # ODD is ageing, but refused lately: not an extra
    clock.advance(REFUSED_QUOTE_SECONDS)

    assert exchange.asked[-2:] == [["ODD"], ["AAPL"]]  # one request for AAPL, not two
    assert book.refused_lately("ODD") is False
