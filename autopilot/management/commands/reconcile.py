"""`autopilot reconcile [--loop]`: recover runs — the database row is the truth, not the queue.

One pass fails runs whose lease expired (their worker was killed or its machine lost) and re-enqueues
queued runs whose message is lost or stranded in a dead cluster. `autopilot serve` runs it with
`--loop` beside the clusters, every AUTOPILOT_RECONCILE_SECONDS (default: a quarter of
AUTOPILOT_LEASE_SECONDS), so a killed worker's run is failed, and a stranded queued run re-enqueued,
within two lease periods. The manager's tick runs the same pass once a minute.

Each pass also sweeps interactive sessions (runs.interactive.sweep): ends those asked to stop, whose
shell exited or that sat idle past AUTOPILOT_INTERACTIVE_IDLE_SECONDS, and kills tmux servers whose run
is finished or unknown, so a server killed mid-session leaves no orphan terminal once it is back.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.db import close_old_connections

from autopilot.cli_support import AutopilotCommand
from runs import interactive
from runs.services import reconcile_runs

logger = logging.getLogger(__name__)


def reconcile_pass() -> dict:
    result = reconcile_runs()
    result["interactive"] = interactive.sweep()
    return result


def reconcile_interval() -> float:
    configured = settings.AUTOPILOT_RECONCILE_SECONDS
    return max(0.5, float(configured) if configured else settings.AUTOPILOT_LEASE_SECONDS / 4)


class Command(AutopilotCommand):
    help = (
        "Fail runs whose worker is gone and re-enqueue queued runs whose message was lost (once, or --loop)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Keep reconciling every AUTOPILOT_RECONCILE_SECONDS until SIGTERM/SIGINT.",
        )

    def handle(self, *args, **options):
        if not options["loop"]:
            result = reconcile_pass()
            swept = result["interactive"]
            self.emit(
                result,
                f"reaped runs: {result['reaped'] or 'none'}; requeued runs: {result['requeued'] or 'none'}; "
                f"interactive sessions ended: {swept['ended'] or 'none'}; "
                f"orphan terminals killed: {swept['orphans_killed'] or 'none'}",
            )
            return
        stop = {"now": False}

        def on_signal(_signum, _frame):
            stop["now"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        interval = reconcile_interval()
        logger.info("reconciler: every %.2f s (lease %s s)", interval, settings.AUTOPILOT_LEASE_SECONDS)
        while not stop["now"]:
            started = time.monotonic()
            try:
                close_old_connections()
                result = reconcile_pass()
                if result["reaped"] or result["requeued"]:
                    logger.warning("reconciler: reaped %s, requeued %s", result["reaped"], result["requeued"])
                if any(result["interactive"].values()):
                    logger.warning("reconciler: interactive sessions %s", result["interactive"])
            except Exception:  # noqa: BLE001 - a failed pass (database busy or away) is retried next time
                logger.exception("reconciler pass failed")
            deadline = started + interval
            while not stop["now"] and time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
