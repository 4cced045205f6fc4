"""Server-side guard: a site's training result that does not fit the global model never reaches aggregation.

A task result filter on the server (runs before the round recorder and the aggregator see the
result). The sites' own executor checks the same before sending; this catches what a user's own
Executor sends. Shapes are compared with the current global model; every value must be finite.
A failing result is replaced by an error reply naming the key and the problem.
Shipped in the job's ``custom/`` folder; plain NVFlare.
"""

from __future__ import annotations

import rt_checks
from nvflare.apis.dxo import from_shareable
from nvflare.apis.filter import Filter
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants

ERROR_HEADER = "rt_error"


class UpdateGuard(Filter):
    def __init__(self) -> None:
        super().__init__()
        self._reference: dict | None = None

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
        problem = rt_checks.update_problem(dxo.data or {}, reference, who="the site's executor")
        if not problem:
            return shareable
        peer = fl_ctx.get_peer_context()
        site = peer.get_identity_name() if peer else "a site"
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
