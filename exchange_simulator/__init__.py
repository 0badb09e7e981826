"""A simulated stock exchange for development, tests and chaos runs.

Run it with ``python -m exchange_simulator --help``; embed it with
``exchange_simulator.server.ExchangeSimulator``. State lives in memory only.
"""
