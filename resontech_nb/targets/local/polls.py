"""How long the simulator's processes sleep between looks: NVFlare's fixed sleeps, cut.

The runner's and server's loops sleep at most ``POLL_S``; a site's worker at most ``SITE_POLL_S`` (the same as
the job's ``task_request_interval`` default).
"""

from __future__ import annotations

import time
import types

POLL_S = 0.05
SITE_POLL_S = 0.1


class ShortPolls(types.ModuleType):
    """The ``time`` module as one module sees it: the same, except that no sleep is longer than ``poll_s``."""

    def __init__(self, poll_s: float) -> None:
        super().__init__("time")
        self.poll_s = poll_s

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.poll_s))


def shorten_polls(module: types.ModuleType, poll_s: float = POLL_S) -> None:
    """Make every ``time.sleep`` in ``module`` at most ``poll_s`` (its other uses of ``time`` are unchanged)."""
    module.time = ShortPolls(poll_s)
