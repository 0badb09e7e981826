from django.apps import AppConfig


class ExecutionConfig(AppConfig):
    """Sending trades to the exchange, settling what it reports, and repairing what was
    left undone. No models of its own: it moves trades (trades) and money (balances)."""

    name = "execution"
    verbose_name = "Execution"
