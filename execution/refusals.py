"""What to book when the exchange refuses an order outright (HTTP 400)."""

from __future__ import annotations

import logging

from execution.exchange_client import (
    ExchangeClient,
    ExchangeRejectedRequest,
    OrderRequest,
    OrderState,
)
from execution.settlement import REFUSED_BY_EXCHANGE, rejected_report

logger = logging.getLogger("execution.refusals")


def refusal_report(
    client: ExchangeClient, order: OrderRequest, refusal: ExchangeRejectedRequest
) -> OrderState:
    """The report to settle a refused order with: a rejection only once the exchange
    confirms it has no record of the order; otherwise the exchange's own record. A
    resubmission of an order the exchange did record (the first try may have landed in
    the meantime) must not be booked as refused: that would release its hold and send the
    customer's next trade while the first could still fill. Raises ExchangeError when the
    exchange cannot say."""
    known = client.get_order(order.client_order_id)
    if known is not None:
        logger.warning(
            "event=refused_but_recorded trade=%s status=%s", order.client_order_id, known.status
        )
        return known
    return rejected_report(
        trade_id=int(order.client_order_id),
        reason=f"{REFUSED_BY_EXCHANGE}: {refusal.detail}"[:200],
        request=order,
    )
