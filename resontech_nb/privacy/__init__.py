"""Privacy filters each site applies to its update before it leaves: ``FederationConfig.privacy``.

The setting is a list of NVFlare result filters separated by ``;``, each ``name`` or ``name:args``:

- ``exclude:REGEX``: NVFlare's ``ExcludeVars``. The state_dict entries whose name the regular expression
  finds (``re.search``) are never sent; the server keeps its own value of them, so in the global model they
  stay at their starting values, and each site trains them from there every round. Hides those layers
  entirely, e.g. ``exclude:^fc\\.`` for a classifier head fitted to a site's own labels.
- ``percentile[:percentile=10,gamma=0.01]``: NVFlare's ``PercentilePrivacy`` (Shokri and Shmatikov, 2015).
  Only the update's values above the ``percentile``-th percentile of its absolute values (after dividing by
  the site's sample count) are sent, each clipped to ``gamma``; the rest are sent as 0. Hides small
  changes and bounds large ones.
- ``svt[:fraction=0.1,epsilon=0.1,noise_var=0.1,gamma=1e-5,tau=1e-6]``: NVFlare's ``SVTPrivacy``, the
  sparse vector technique: a ``fraction`` of the update's values, chosen by a noisy threshold test, is
  sent with Laplace noise (privacy budget ``epsilon``); the rest are sent as 0. Differential privacy for
  what is sent, at a cost in accuracy.

Filters run in the order given. Updates travel as ``local - global`` when any filter is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

FILTERS: dict[str, tuple[str, dict[str, float]]] = {
    "exclude": ("nvflare.app_common.filters.exclude_vars.ExcludeVars", {}),
    "percentile": (
        "nvflare.app_common.filters.percentile_privacy.PercentilePrivacy",
        {"percentile": 10, "gamma": 0.01},
    ),
    "svt": (
        "nvflare.app_common.filters.svt_privacy.SVTPrivacy",
        {"fraction": 0.1, "epsilon": 0.1, "noise_var": 0.1, "gamma": 1e-5, "tau": 1e-6},
    ),
}
EXAMPLE = "exclude:^fc\\. ; percentile:percentile=10,gamma=0.01 ; svt:epsilon=0.1"


class PrivacySpecError(ValueError):
    """A privacy setting that cannot be turned into NVFlare filters."""


@dataclass(frozen=True)
class PrivacyFilter:
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def component(self) -> dict[str, Any]:
        """The filter as an NVFlare component (``{"path": ..., "args": ...}``)."""
        path, _ = FILTERS[self.name]
        if self.name == "exclude":
            return {"path": path, "args": {"exclude_vars": self.args["pattern"]}}
        return {"path": path, "args": dict(self.args)}


def parse_privacy(spec: str) -> list[PrivacyFilter]:
    """The filters a privacy setting names, in order; raises PrivacySpecError naming the fix."""
    filters = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, _, rest = part.partition(":")
        name = name.strip().lower()
        if name not in FILTERS:
            raise PrivacySpecError(
                f"unknown privacy filter {name!r} in privacy={spec!r}; use {', '.join(FILTERS)} "
                f"(e.g. privacy={EXAMPLE!r})"
            )
        filters.append(_exclude(rest.strip(), spec) if name == "exclude" else _numeric(name, rest, spec))
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
    """One regular expression for the state_dict keys the ``exclude`` filters withhold ("" for none)."""
    patterns = [f.args["pattern"] for f in parse_privacy(spec) if f.name == "exclude"]
    return "|".join(f"(?:{p})" for p in patterns)


def withheld_keys_problem(spec: str, keys: list[str]) -> str:
    """At build time: an ``exclude`` filter that withholds none of the model's keys, or all of them."""
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


def _exclude(pattern: str, spec: str) -> PrivacyFilter:
    if not pattern:
        raise PrivacySpecError(
            f"privacy={spec!r}: exclude needs a regular expression of state_dict keys, e.g. exclude:^fc\\."
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PrivacySpecError(f"privacy={spec!r}: {pattern!r} is not a regular expression ({exc})") from None
    return PrivacyFilter("exclude", {"pattern": pattern})


def _numeric(name: str, rest: str, spec: str) -> PrivacyFilter:
    _, defaults = FILTERS[name]
    args: dict[str, Any] = dict(defaults)
    for item in (i.strip() for i in rest.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise PrivacySpecError(
                f"privacy={spec!r}: {name} has no parameter {key!r}; its parameters: {', '.join(defaults)}"
            )
        if not sep or not value.strip():
            raise PrivacySpecError(f"privacy={spec!r}: {name}'s {key} has no value: write {key}={defaults[key]}")
        try:
            number = float(value)
        except ValueError:
            raise PrivacySpecError(f"privacy={spec!r}: {name}'s {key}={value.strip()!r} is not a number") from None
        args[key] = number
    problem = _range_problem(name, args)
    if problem:
        raise PrivacySpecError(f"privacy={spec!r}: {problem}")
    return PrivacyFilter(name, args)


def _range_problem(name: str, args: dict[str, float]) -> str:
    if name == "percentile":
        if not 0 <= args["percentile"] <= 100:
            return f"percentile's percentile must be between 0 and 100, got {args['percentile']}"
        if args["gamma"] <= 0:
            return f"percentile's gamma (the clip on each value) must be above 0, got {args['gamma']}"
    if name == "svt":
        if not 0 < args["fraction"] <= 1:
            return f"svt's fraction (the share of values sent) must be above 0 and at most 1, got {args['fraction']}"
        for key in ("epsilon", "noise_var", "gamma"):
            if args[key] <= 0:
                return f"svt's {key} must be above 0, got {args[key]}"
        if args["tau"] < 0:
            return f"svt's tau must be >= 0, got {args['tau']}"
    return ""
