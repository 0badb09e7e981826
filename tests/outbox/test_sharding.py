from collections import Counter

import pytest
from django.db import connection

from outbox.sharding import shard_for_customer


@pytest.mark.django_db
def test_python_and_sql_agree_on_every_customers_shard():
    ids = [*range(1, 2000), 2**31 - 1, 2**31, 2**40 + 7, 2**62 + 123]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, outbox_shard_of(id, 100) FROM unnest(%s::bigint[]) AS id", [ids])
        in_sql = dict(cursor.fetchall())
    assert in_sql == {i: shard_for_customer(i, 100) for i in ids}


def test_consecutive_customers_spread_evenly():
    counts = Counter(shard_for_customer(i, 100) for i in range(1, 100_001))
    assert len(counts) == 100
    assert max(counts.values()) - min(counts.values()) <= 10
