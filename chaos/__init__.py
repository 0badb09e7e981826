"""The chaos soak: the whole stack as real processes under seeded faults and traffic.

Run it with `python -m chaos [--duration SECONDS] [--seed N] [--customers N] [--short]`;
see chaos/soak.py for what it does and chaos/report.py for what it checks."""
