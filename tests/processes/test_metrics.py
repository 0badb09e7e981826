"""Every process's /metrics against the database: the counters of a running stack move by
exactly the trades placed, sent, filled and rejected, summed over the processes (and over
each gunicorn's workers); the gauges follow a leader killed and its standby."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack import Stack, database_url, free_port, wait_for
from outbox.sharding import parse_shards
from tests.factories import create_customer
from tests.processes.test_execution_processes import place_many, wait_until_all_terminal
from trades.models import Trade

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = requests.get(url, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def total(scrapes: dict[str, Samples], name: str, **labels: str) -> float:
    return sum(value(samples, name, **labels) for samples in scrapes.values())


def expected_rejections() -> Counter[str]:
    reasons: Counter[str] = Counter()
    for reason, submitted in Trade.objects.filter(status="rejected").values_list(
        "reason", "submitted_at"
    ):
        assert reason is not None
        if submitted is None:
            reasons[reason.replace(" ", "_")] += 1
        elif reason.startswith("refused by exchange"):
            reasons["refused_by_exchange"] += 1
        else:
            reasons["rejected_by_exchange"] += 1
    return reasons


def test_every_process_counts_what_it_committed_and_the_gauges_follow_the_leaders(tmp_path):
    stack = Stack(
        tmp_path,
        database_url=database_url(),
        shard_count=settings.SHARD_COUNT,
        separate_callbacks=True,
        env={"WORKER_LEASE_TIMEOUT": "3"},
    )
    ports = {name: free_port() for name in ("w1", "w2", "w3", "reaper")}
    first_half = parse_shards("1/2", settings.SHARD_COUNT)
    try:
        stack.start_exchange("--fill-delay-ms", "1,10", "--reject-rate", "0.2")
        stack.start_web(workers=2)
        stack.start_callbacks(workers=2)
        stack.start_worker("w1", "1/2", metrics_port=ports["w1"])
        stack.start_worker("w2", "2/2", metrics_port=ports["w2"])
        stack.start_reaper(metrics_port=ports["reaper"])
        rich = [create_customer(cash="100000.00", positions={"AAPL": 20}) for _ in range(6)]
        poor = [create_customer(cash="1.00") for _ in range(2)]

        responses = place_many(stack, rich, per_customer=5)
        responses += place_many(stack, rich[:3], per_customer=1, side="sell", quantity=5)
        responses += place_many(stack, poor, per_customer=2)
        placed = len(responses)
        assert {r.status_code for r in responses} == {201}
        wait_until_all_terminal()

        urls = {
            "web": f"http://127.0.0.1:{stack.web_upstream_port}/metrics",
            "callbacks": f"http://127.0.0.1:{stack.callbacks_upstream_port}/metrics",
            "w1": f"http://127.0.0.1:{ports['w1']}/metrics",
            "w2": f"http://127.0.0.1:{ports['w2']}/metrics",
            "reaper": f"http://127.0.0.1:{ports['reaper']}/metrics",
        }
        scrapes = {name: scrape(url) for name, url in urls.items()}
        trades = Trade.objects.all()
        filled = trades.filter(status="filled")
        rejections = expected_rejections()
        assert rejections["insufficient_funds"] == 4 and rejections["rejected_by_exchange"] > 0

        assert value(scrapes["web"], "brokerage_trades_placed_total") == placed
        assert total(scrapes, "brokerage_trades_placed_total") == placed
        assert (
            value(
                scrapes["web"],
                "brokerage_http_requests_total",
                view="trades",
                method="POST",
                status="201",
            )
            == placed
        )
        assert value(
            scrapes["web"],
            "brokerage_http_request_duration_seconds_count",
            view="trades",
            method="POST",
        ) == len(responses)
        sent = trades.filter(submitted_at__isnull=False).count()
        assert total(scrapes, "brokerage_trades_sent_total") == sent
        assert value(scrapes["w1"], "brokerage_trades_sent_total") > 0
        assert value(scrapes["w2"], "brokerage_trades_sent_total") > 0
        for side in ("buy", "sell"):
            assert total(scrapes, "brokerage_trades_filled_total", side=side) == (
                filled.filter(side=side).count()
            )
        for reason in {*rejections, "refused_by_exchange", "insufficient_shares"}:
            assert (
                total(scrapes, "brokerage_trades_rejected_total", reason=reason)
                == (rejections[reason])
            ), reason
        assert total(scrapes, "brokerage_trade_place_to_fill_seconds_count") == filled.count()
        # Every report of the exchange settled once: by its callback, or by the reaper.
        settled = total(scrapes, "brokerage_callbacks_total", result="settled") + total(
            scrapes, "brokerage_reaper_repairs_total", kind="settled"
        )
        assert settled == filled.count() + rejections["rejected_by_exchange"]
        assert (
            total(
                scrapes, "brokerage_exchange_requests_total", operation="submit_order", outcome="ok"
            )
            >= sent
        )
        assert total(scrapes, "brokerage_callbacks_total", result="invalid_signature") == 0

        def gauges_settle() -> bool:
            web, w1, w2, reaper = (scrape(urls[n]) for n in ("web", "w1", "w2", "reaper"))
            return (
                value(web, "brokerage_database_up") == 1
                and value(web, "brokerage_shards") == settings.SHARD_COUNT
                and value(web, "brokerage_shards_leaderless") == 0
                and value(web, "brokerage_reapers_active") == 1
                and value(web, "brokerage_open_trades") == 0
                and value(web, "brokerage_outbox_rows_waiting") == 0
                and value(w1, "brokerage_worker_shards_led", worker="w1") == len(first_half)
                and value(w2, "brokerage_worker_shards_led", worker="w2")
                == settings.SHARD_COUNT - len(first_half)
                and value(w1, "brokerage_worker_heartbeat_age_seconds", worker="w1") < 3
                and value(w1, "brokerage_worker_submit_queue_depth", worker="w1") == 0
                and value(reaper, "brokerage_reaper_lock_held") == 1
                and value(reaper, "brokerage_reaper_passes_total", outcome="complete") > 0
            )

        wait_for(gauges_settle, timeout=20, what="the gauges of a healthy stack")

        stack.kill("w1")
        wait_for(
            lambda: requests.get(f"{stack.web_url}/readyz", timeout=5).status_code == 503,
            timeout=30,
            what="readiness to see the leader gone",
        )
        assert value(scrape(urls["web"]), "brokerage_shards_leaderless") == len(first_half)

        stack.start_worker("w3", "1/2", metrics_port=ports["w3"])
        wait_for(
            lambda: requests.get(f"{stack.web_url}/readyz", timeout=5).status_code == 200,
            timeout=30,
            what="readiness once the standby leads",
        )
        assert value(scrape(urls["web"]), "brokerage_shards_leaderless") == 0
        w3 = scrape(f"http://127.0.0.1:{ports['w3']}/metrics")
        assert value(w3, "brokerage_worker_shards_led", worker="w3") == len(first_half)
    finally:
        stack.stop_all()


def test_the_proxy_does_not_serve_metrics_to_the_public(tmp_path):
    stack = Stack(
        tmp_path,
        database_url=database_url(),
        shard_count=settings.SHARD_COUNT,
        separate_callbacks=True,
        proxied=True,
    )
    try:
        stack.start_web(workers=1)
        stack.start_callbacks(workers=1)
        stack.start_admin()
        stack.start_proxy()
        for port in (stack.web_port, stack.callbacks_port):
            response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"
        # Each gunicorn serves its own on its internal port; the database's gauges only the
        # customer API's.
        for port, database_gauges in (
            (stack.web_upstream_port, True),
            (stack.callbacks_upstream_port, False),
            (stack.admin_port, False),
        ):
            url = f"http://127.0.0.1:{port}/metrics"
            scrape(url)
            samples = scrape(url)
            assert value(samples, "brokerage_http_requests_total", view="metrics", status="200")
            assert (value(samples, "brokerage_database_up") == 1) is database_gauges
    finally:
        stack.stop_all()
