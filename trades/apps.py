from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_reference_tickers(sender: object, **kwargs: object) -> None:
    # Also runs after a test flush, which empties every table.
    from trades.models import Ticker
    from trades.reference import load_reference_tickers

    if not Ticker.objects.exists():
        load_reference_tickers()


class TradesConfig(AppConfig):
    name = "trades"
    verbose_name = "Trades"

    def ready(self) -> None:
        post_migrate.connect(_ensure_reference_tickers, sender=self)
