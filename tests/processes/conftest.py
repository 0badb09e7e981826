"""What the process tests share."""

from __future__ import annotations

import pytest
from django.conf import settings

from devtools.stack import Stack, database_url


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The stack as in production: a callback receiver of its own, nginx in front (each
    test starts the processes it needs). Modules with other needs define their own."""
    stack = Stack(
        tmp_path,
        database_url=database_url(),
        shard_count=settings.SHARD_COUNT,
        separate_callbacks=True,
        proxied=True,
    )
    yield stack
    stack.stop_all()
