from django.apps import AppConfig


class AlpacaCompatConfig(AppConfig):
    name = "alpaca_compat"
    verbose_name = "Alpaca-compatible API"

    def ready(self) -> None:
        from alpaca_compat.clock import market_hours

        market_hours()  # a malformed EXCHANGE_MARKET_HOURS fails at start, not per request
