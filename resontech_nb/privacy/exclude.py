"""``exclude:REGEX``: NVFlare's ``ExcludeVars``.

The state_dict entries whose name the regular expression finds (``re.search``) are never sent; the server keeps
its own value of them, so in the global model they stay at their starting values, and each site trains them from
there every round. Hides those layers entirely, e.g. ``exclude:^fc\\.`` for a classifier head fitted to a site's
own labels.
"""

from __future__ import annotations

import re
from typing import Any

from .base import FilterKind, PrivacySpecError


class Exclude(FilterKind):
    name = "exclude"
    path = "nvflare.app_common.filters.exclude_vars.ExcludeVars"

    @classmethod
    def parse(cls, text: str, spec: str) -> dict[str, Any]:
        pattern = text.strip()
        if not pattern:
            raise PrivacySpecError(
                f"privacy={spec!r}: exclude needs a regular expression of state_dict keys, e.g. exclude:^fc\\."
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PrivacySpecError(f"privacy={spec!r}: {pattern!r} is not a regular expression ({exc})") from None
        return {"pattern": pattern}

    @classmethod
    def nvflare_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        return {"exclude_vars": args["pattern"]}

    @classmethod
    def withheld(cls, args: dict[str, Any]) -> str:
        return args["pattern"]
