"""A user's own NVFlare components (an Executor, a persistor) shipped inside the job.

``build_job(executor=..., persistor=...)`` takes classes: one from an importable module is shipped as that
module's source, one defined in a notebook cell as its captured source (``capture.component_source``), one
of NVFlare's own by its path. Our standard arguments are passed only where the class's ``__init__`` takes
them, and imports of our job-side defaults are rewritten to the top-level modules a site has.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import JobBuildError


def accepted_args(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """The subset of our standard args that ``cls.__init__`` takes."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(args)
    return {k: v for k, v in args.items() if k in params}


def ship_component(cls: type, base_path: str, custom: Path) -> str:
    """Write the source of a user's NVFlare component class into custom/; return its config path."""
    module_name, base_attr = base_path.rsplit(".", 1)
    base = getattr(__import__(module_name, fromlist=[base_attr]), base_attr)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise JobBuildError(f"{cls!r} must be a subclass of {base_path}")
    module = sys.modules.get(cls.__module__)
    source_file = None
    if module is not None and cls.__module__ not in ("__main__", "builtins"):
        try:
            source_file = inspect.getsourcefile(module)
        except TypeError:
            source_file = None
    if source_file and Path(source_file).is_file():
        target_module = cls.__module__.split(".")[-1]
        if cls.__module__.split(".")[0] == "nvflare":
            return f"{cls.__module__}.{cls.__qualname__}"  # shipped with NVFlare itself
        source = Path(source_file).read_text(encoding="utf-8")
    else:
        from ..capture import component_source

        target_module = "user_" + re.sub(r"\W", "_", cls.__name__).lower()
        source = component_source(cls)
    (custom / f"{target_module}.py").write_text(site_imports(source), encoding="utf-8")
    return f"{target_module}.{cls.__qualname__}"


def site_imports(source: str) -> str:
    """Subclasses of our defaults import them from resontech_nb.jobcode; on a site they are top-level modules."""
    source = re.sub(r"\bfrom resontech_nb\.jobcode\.(rt_\w+) import", r"from \1 import", source)
    source = re.sub(r"\bfrom resontech_nb\.jobcode import (rt_\w+)", r"import \1", source)
    return re.sub(r"\bimport resontech_nb\.jobcode\.(rt_\w+) as", r"import \1 as", source)
