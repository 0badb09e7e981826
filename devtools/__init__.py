"""Development tooling, not the product: the embedded Postgres, the process stack the
real-process tests, the benchmark and the chaos soak drive, `make run`'s launcher and
`make demo`."""
