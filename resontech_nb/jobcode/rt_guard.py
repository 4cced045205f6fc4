"""Server-side guard: a site's training result that does not fit the global model never reaches aggregation.

A task result filter on the server (runs before the round recorder and the aggregator see the
result). The sites' own executor checks the same before sending; this catches what a user's own
Executor sends. Shapes are compared with the current global model; every value must be finite.
A failing result is replaced by an error reply naming the key and the problem. Keys that the sites'
privacy filters withhold (``withheld``, a regular expression) may be missing; the first update of each
site that lacks them is logged, naming them, so the server's log shows what it never received.
Shipped in the job's ``custom/`` folder; plain NVFlare.
"""

from __future__ import annotations

import re

import rt_checks
from nvflare.apis.dxo import DataKind, from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants

ERROR_HEADER = "rt_error"


class UpdateGuard(Filter):
    def __init__(self, withheld: str = "") -> None:
        super().__init__()
        self._reference: dict | None = None
        self._withheld = re.compile(withheld) if withheld else None
        self._logged: set[str] = set()

    def _reference_of(self, fl_ctx: FLContext) -> dict | None:
        if self._reference is None:
            learnable = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
            weights = learnable.get(ModelLearnableKey.WEIGHTS) if learnable else None
            if weights:  # shapes never change; dtypes may (FedAvg averages integer buffers as floats)
                self._reference = rt_checks.reference_of(weights, with_dtypes=False)
        return self._reference

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        rc = shareable.get_return_code()
        if rc and rc != ReturnCode.OK:
            return shareable
        reference = self._reference_of(fl_ctx)
        if reference is None:
            return shareable
        try:
            dxo = from_shareable(shareable)
        except ValueError:
            return shareable  # not a DXO: the aggregator rejects it and the recorder says so
        peer = fl_ctx.get_peer_context()
        site = peer.get_identity_name() if peer else "a site"
        update = dxo.data.get(AppConstants.MODEL_WEIGHTS) if dxo.data_kind == DataKind.COLLECTION else dxo
        weights = (update.data if update is not None else None) or {}
        problem = rt_checks.update_problem(
            weights, self._expected(reference, weights, site, fl_ctx), who="the site's executor"
        )
        if not problem:
            return shareable
        self.log_error(fl_ctx, f"rejected the update of {site}: {problem}")
        reply = make_reply(ReturnCode.EXECUTION_RESULT_ERROR)
        reply.set_header(ERROR_HEADER, f"update rejected by the server: {problem}")
        for key, value in (dxo.meta or {}).items():
            if key.startswith("rt_validat"):  # the site's validation of the previous model still counts
                reply.set_header(key, value)
        cookie = shareable.get_cookie(AppConstants.CONTRIBUTION_ROUND)
        if cookie is not None:
            reply.add_cookie(AppConstants.CONTRIBUTION_ROUND, cookie)
        return reply

    def _expected(self, reference: dict, weights: dict, site: str, fl_ctx: FLContext) -> dict:
        """The reference without the keys the privacy filters withhold (and that the site did withhold)."""
        if self._withheld is None:
            return reference
        withheld = [k for k in reference if k not in weights and self._withheld.search(k)]
        if withheld and site not in self._logged:
            self._logged.add(site)
            self.log_info(
                fl_ctx,
                f"{site} sent {len(reference) - len(withheld)} of {len(reference)} tensors; withheld by its "
                f"privacy filter: {', '.join(withheld)}",
            )
        return {k: v for k, v in reference.items() if k not in withheld}
