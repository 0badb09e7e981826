"""Every Prometheus metric the brokerage's processes export, in one place.

Counters count what committed, in the process that did it: a trade placed by the web, put
in flight by a worker, settled by the callback receiver, the reaper or a worker. Summed
over every process they count each trade once. What the database knows (open trades, the
backlog, who leads) is read at scrape time by the web's /metrics (execution.metrics).

Labels take a small, fixed set of values (never a customer, a trade or a ticker). The
gauges of a long-running command carry its name as a label, so that no other process
exports them (under gunicorn's multiprocess mode a label-less gauge would appear in every
worker); see docs/operations.md "Metrics" for how each is scraped."""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)

# Each counter's and histogram's creation time, as a series of its own: noise here.
disable_created_metrics()

# -- trades ------------------------------------------------------------------------------

TRADES_PLACED = Counter(
    "brokerage_trades_placed_total",
    "Trades accepted (a replayed client_order_id is not counted again).",
)
TRADES_SENT = Counter(
    "brokerage_trades_sent_total",
    "Trades put in flight to the exchange, each once (resubmissions are not counted).",
)
TRADES_FILLED = Counter("brokerage_trades_filled_total", "Trades settled as filled.", ["side"])
TRADES_REJECTED = Counter(
    "brokerage_trades_rejected_total",
    "Trades rejected, by reason: insufficient_funds, insufficient_shares, "
    "not_traded_at_the_exchange, quote_out_of_range (before sending); refused_by_exchange "
    "(the order was refused outright), rejected_by_exchange (a report said rejected).",
    ["reason"],
)
TRADES_CANCELLED = Counter("brokerage_trades_cancelled_total", "Trades cancelled.", ["by"])
PLACE_TO_FILL_SECONDS = Histogram(
    "brokerage_trade_place_to_fill_seconds",
    "From a trade's placement to its fill's settlement (the database's clock).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)

# -- requests ----------------------------------------------------------------------------

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_REQUESTS = Counter(
    "brokerage_http_requests_total",
    "Requests answered, by view (the URL pattern's name; 'unmatched' for none), method and status.",
    ["view", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "brokerage_http_request_duration_seconds",
    "Time to answer a request, inside the app (placement: view=trades, method=POST).",
    ["view", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CALLBACKS = Counter(
    "brokerage_callbacks_total",
    "Exchange callbacks, by result: settled, already_final, still_open, unknown_trade, "
    "report_mismatch, malformed_callback, invalid_signature, error.",
    ["result"],
)

# -- the exchange ------------------------------------------------------------------------

EXCHANGE_REQUESTS = Counter(
    "brokerage_exchange_requests_total",
    "Requests to the exchange, by operation (quotes, submit_order, get_order) and outcome: "
    "ok, refused (400), conflict (409), unavailable (unreachable or 5xx after retries), "
    "unexpected (any other answer).",
    ["operation", "outcome"],
)
EXCHANGE_REQUEST_SECONDS = Histogram(
    "brokerage_exchange_request_duration_seconds",
    "Time of a request to the exchange, retries included.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# -- workers and the reaper --------------------------------------------------------------

WORKER_SHARDS_LED = Gauge(
    "brokerage_worker_shards_led", "Shards this worker leads.", ["worker"], multiprocess_mode="max"
)
WORKER_LOCK_CHECK_AGE_SECONDS = Gauge(
    "brokerage_worker_heartbeat_age_seconds",
    "Seconds since this worker last checked its locks on its lock session (writing the "
    "heartbeat of the shards it leads); grows without bound when it cannot.",
    ["worker"],
    multiprocess_mode="max",
)
WORKER_SUBMIT_QUEUE = Gauge(
    "brokerage_worker_submit_queue_depth",
    "Orders handed to this worker's submit threads and not yet answered by the exchange.",
    ["worker"],
    multiprocess_mode="max",
)
REAPER_LOCK_HELD = Gauge(
    "brokerage_reaper_lock_held",
    "1 while this reaper holds the reaper lock (is the active one), else 0.",
    ["reaper"],
    multiprocess_mode="max",
)
REAPER_PASSES = Counter(
    "brokerage_reaper_passes_total",
    "Reaper passes, by outcome: complete, ended_early (exchange unreachable or lock lost), "
    "database_error.",
    ["outcome"],
)
REAPER_REPAIRS = Counter(
    "brokerage_reaper_repairs_total",
    "What the reaper repaired, by kind: requeued (a placed trade without its outbox row), "
    "settled (an order the exchange had finished), resubmitted (an order the exchange did "
    "not know), renotified_shard (a shard whose outbox rows sat unhandled).",
    ["kind"],
)
DATABASE_ERRORS = Counter(
    "brokerage_database_errors_total",
    "Database errors that ended a unit of work (a lost or refused connection, mostly), by "
    "where: request (answered 503), worker, lock_session, reaper.",
    ["where"],
)

# -- the event stream server (events.stream) ---------------------------------------------

EVENT_STREAMS_OPEN = Gauge(
    "brokerage_event_streams_open",
    "Event streams this stream server holds open.",
    ["server"],
    multiprocess_mode="livesum",
)
EVENT_STREAMS_REFUSED = Counter(
    "brokerage_event_streams_refused_total",
    "Stream requests refused, by reason: not_authenticated, throttled, no_account, "
    "too_many_streams (the customer's cap), invalid_request.",
    ["reason"],
)
EVENT_STREAM_EVENTS_SENT = Counter(
    "brokerage_event_stream_events_sent_total", "Events written to the streams."
)
EVENT_STREAM_DELIVERY_SECONDS = Histogram(
    "brokerage_event_stream_delivery_seconds",
    "From an event's commit (its created_at, the database's clock) to its write to a stream.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENT_STREAM_LISTENING = Gauge(
    "brokerage_event_stream_listening",
    "1 while this stream server's LISTEN session is up, else 0 (streams then wait for the sweep).",
    ["server"],
    multiprocess_mode="max",
)


def exposition(*extra: CollectorRegistry) -> bytes:
    """This process's metrics in Prometheus's text format, or, under gunicorn's
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR, see brokerage.gunicorn_config), every
    worker's of this gunicorn; then those of `extra`."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    return output + b"".join(generate_latest(registry) for registry in extra)


def serve_metrics(port: int, address: str) -> None:
    """Serve this process's metrics at http://address:port/metrics on a thread of its own
    (a long-running command's); raises OSError if the port cannot be had."""
    start_http_server(port, addr=address)
