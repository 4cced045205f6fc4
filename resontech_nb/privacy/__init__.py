"""Privacy filters each site applies to its update before it leaves: ``FederationConfig.privacy``.

Each filter is one module and one line of ``REGISTRY``; see ``base.py``.
"""

from __future__ import annotations

import re
from typing import Any

from .base import EXAMPLE, FilterKind, PrivacyFilter, PrivacySpecError
from .exclude import Exclude
from .percentile import Percentile
from .svt import SVT

REGISTRY: dict[str, type[FilterKind]] = {
    Exclude.name: Exclude,
    Percentile.name: Percentile,
    SVT.name: SVT,
}


def parse_privacy(spec: str) -> list[PrivacyFilter]:
    """The filters a privacy setting names, in order; raises PrivacySpecError naming the fix."""
    filters = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, _, rest = part.partition(":")
        name = name.strip().lower()
        if name not in REGISTRY:
            raise PrivacySpecError(
                f"unknown privacy filter {name!r} in privacy={spec!r}; use {', '.join(REGISTRY)} "
                f"(e.g. privacy={EXAMPLE!r})"
            )
        kind = REGISTRY[name]
        filters.append(PrivacyFilter(kind, kind.parse(rest, spec)))
    return filters


def privacy_problem(spec: str) -> str:
    """What is wrong with a privacy setting; "" when it is usable (or empty)."""
    try:
        parse_privacy(spec)
    except PrivacySpecError as exc:
        return str(exc)
    return ""


def client_filters(spec: str) -> list[dict[str, Any]]:
    """NVFlare's ``task_result_filters`` entry for the sites' train results (empty without filters)."""
    filters = [f.component() for f in parse_privacy(spec)]
    return [{"tasks": ["train"], "filters": filters}] if filters else []


def withheld_pattern(spec: str) -> str:
    """One regular expression for the state_dict keys the filters withhold ("" for none)."""
    patterns = [p for f in parse_privacy(spec) if (p := f.kind.withheld(f.args))]
    return "|".join(f"(?:{p})" for p in patterns)


def withheld_keys_problem(spec: str, keys: list[str]) -> str:
    """At build time: filters that withhold none of the model's keys, or all of them."""
    pattern = withheld_pattern(spec)
    if not pattern:
        return ""
    matcher = re.compile(pattern)
    withheld = [k for k in keys if matcher.search(k)]
    if not withheld:
        return (
            f"privacy={spec!r} withholds none of the model's state_dict keys ({', '.join(keys[:6])}"
            f"{', ...' if len(keys) > 6 else ''}): fix the exclude pattern"
        )
    if len(withheld) == len(keys):
        return f"privacy={spec!r} withholds every key of the model's state_dict, so no site would send anything"
    return ""


__all__ = [
    "EXAMPLE",
    "REGISTRY",
    "PrivacyFilter",
    "PrivacySpecError",
    "client_filters",
    "parse_privacy",
    "privacy_problem",
    "withheld_keys_problem",
    "withheld_pattern",
]
