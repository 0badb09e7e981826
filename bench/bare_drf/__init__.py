"""The web stack's ceiling on this machine: a bare DRF view under gunicorn that inserts a
trade row and an outbox row through the ORM, and nothing else (no middleware, no
authentication, no validation, no account lock, no rate limit, no idempotency key).

It is the reference the Execution issue quotes ("about 1,200-1,400 requests/s on a
machine like ours"); the benchmark drives it with the same load as the real API, so our
placement rate can be read as a fraction of what Django + DRF can do here at all. It is
not a placement: each trade gets a sequence number far above its customer's own, and the
benchmark cancels them afterwards."""
