"""The benchmark: `make bench` (or `python -m bench --help`).

Loads a separate database to size, measures the Postgres ceiling for the place-trade
transaction, then drives the whole stack (real processes) through its HTTP API."""
