"""What an algorithm is, to the notebook side: its settings and what it changes in the job's NVFlare configuration.

An algorithm is one small class over ``Algorithm`` (FedAvg's behaviour is the default of every method) plus
one line in the registry (``algorithms/__init__.py``). It brings its own settings (``Setting``: name, type,
default, help, flag, check), which ``FederationConfig`` adds as fields and ``%fl_submit`` as flags. Its job
side (what the sites do with the payload) lives in ``jobcode/`` (plain NVFlare + torch).

An instance wraps one ``FederationConfig`` (read by field name only: this package sits below the
configuration, which imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ..fields import Setting

SCATTER_AND_GATHER = "rt_workflow.RTScatterAndGather"  # NVFlare's ScatterAndGather; min_clients counts good answers
FULL_MODEL_GENERATOR = (
    "nvflare.app_common.shareablegenerators.full_model_shareable_generator.FullModelShareableGenerator"
)


@dataclass(frozen=True)
class PayloadUse:
    """What a custom ``fl_train_model`` must read from the payload for the algorithm to act, and how."""

    key: str
    outcome: str  # what happens when it does not
    how: str  # the fix, as code


class Algorithm:
    """FedAvg's behaviour; a subclass changes what its algorithm changes."""

    name: ClassVar[str] = ""
    settings: ClassVar[dict[str, Setting]] = {}
    # Whether sites send ``local - global`` (WEIGHT_DIFF): algorithms that work on the update.
    works_on_update: ClassVar[bool] = False
    payload_use: ClassVar[PayloadUse | None] = None

    def __init__(self, federation: Any) -> None:
        self.federation = federation

    def workflow(self) -> str:
        """The server's workflow class (a ScatterAndGather)."""
        return SCATTER_AND_GATHER

    def shareable_generator(self) -> dict[str, Any]:
        """The component that turns the aggregated update into the next global model."""
        return {"id": "shareable_generator", "path": FULL_MODEL_GENERATOR, "args": {}}

    def expected_kind(self, update_kind: str) -> Any:
        """The data kind the aggregator expects of each site's result."""
        return update_kind

    def server_components(self, model_class: str) -> list[dict[str, Any]]:
        """Further server components the algorithm needs."""
        return []

    def executor_args(self) -> dict[str, Any]:
        """The built-in executor's arguments for this algorithm."""
        return {"algorithm": self.name}

    def unread_payload_warning(self, source: str) -> str:
        """A warning when a custom ``fl_train_model`` in ``source`` never reads what this algorithm gives it."""
        use = self.payload_use
        if use is None or uses_default_loop(source):
            return ""
        if re.search(rf"""["']{use.key}(_mu)?["']""", source):
            return ""
        return (
            f"algorithm={self.name!r}, but fl_train_model never reads payload[{use.key!r}], so {use.outcome}: {use.how}"
        )


def uses_default_loop(source: str) -> bool:
    """Whether ``model_def.py``'s ``fl_train_model`` is the default loop (which reads every algorithm's payload)."""
    return re.search(r"^def fl_train_model\(payload\):\n    return default_train_model\(", source, re.M) is not None
