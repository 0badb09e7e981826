"""``python -m exchange_simulator``: run the simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from exchange_simulator.config import config_from_args
from exchange_simulator.server import ExchangeSimulator


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    simulator = ExchangeSimulator(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    simulator.start()
    logging.getLogger("exchange_simulator").info(
        "event=config faults=%s", json.dumps(config.faults.to_json(), separators=(",", ":"))
    )
    while not stop.wait(1.0):
        pass
    simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
