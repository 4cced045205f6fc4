"""Preflight: the generated ``model_def.py``, alone in a clean process, must build the notebook's model.

The clean process (``clean_process``) imports the text with only a copy of the job's custom/ folder on its
path, builds the class, lists its state_dict and, given an input shape, runs one forward pass on CPU.
Its parameter count, state_dict keys and shapes are compared with an instance of the notebook's own
class; the first difference fails the capture. This catches every "captured another value than the
notebook uses" mistake, whatever its cause, before a job reaches a site.
"""

from __future__ import annotations

from typing import Any

from ..errors import PreflightError
from . import clean_process
from .spec import EVAL_FN_NAME, TRAIN_FN_NAME, ModelSpec

_STAGE_FIX = {
    "import": "fails to import in a clean Python process (as on an FL site)",
    "define": "is incomplete",
    "init": "cannot build the model",
    "module": "builds something that is not a model",
}


def check_spec(spec: ModelSpec, input_shape: tuple[int, ...] | list[int] | None = None) -> ModelSpec:
    """Build the model from the generated source alone; compare it with the notebook's; optionally run forward.

    The spec's ``param_count``, ``size_bytes`` and ``output_shape`` are filled in and the spec is returned.
    """
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
    notebook = notebook_state(spec.model_cls) if spec.model_cls is not None else None
    functions = [TRAIN_FN_NAME] + ([EVAL_FN_NAME] if spec.has_eval_fn else [])
    fresh = clean_process.inspect_source(spec.source, spec.class_name, functions, shape)
    if not fresh["ok"]:
        raise PreflightError(_failure_message(spec.class_name, fresh, shape))
    if notebook is not None:
        difference = first_difference(notebook, fresh)
        if difference is not None:
            raise PreflightError(
                f"model_def.py builds a different {spec.class_name} than the notebook: {difference}. A name the class "
                "uses was captured with another value than the notebook's: make that value a constant or an "
                "__init__ default and run the cell again"
            )
    spec.param_count = fresh["param_count"]
    spec.size_bytes = fresh["size_bytes"]
    if shape is not None:
        spec.input_shape = shape
        out = fresh["output_shape"]
        spec.output_shape = tuple(out) if out is not None else None
    return spec


def notebook_state(model_cls: type) -> dict[str, Any]:
    """Parameter count and state_dict shapes of ``model_cls()`` built in the kernel (its RNG state is kept)."""
    import torch

    name = model_cls.__name__
    with torch.random.fork_rng(devices=[]):
        try:
            model = model_cls()
        except TypeError as exc:
            raise PreflightError(
                f"{name}() failed: {_one_line(exc)}: FL sites build the model as {name}(), "
                "so give every __init__ argument a default"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the user's __init__
            raise PreflightError(
                f"{name}() failed: {_one_line(exc)}: fix the class's __init__ so it builds without arguments"
            ) from None
    return {
        "param_count": sum(p.numel() for p in model.parameters()),
        "state": [[key, list(value.shape)] for key, value in model.state_dict().items()],
    }


def first_difference(notebook: dict[str, Any], fresh: dict[str, Any]) -> str | None:
    """The first way the clean process's model differs from the notebook's, in words; None when they agree."""
    ours = dict((key, tuple(shape)) for key, shape in notebook["state"])
    theirs = dict((key, tuple(shape)) for key, shape in fresh["state"])
    for key, shape in ours.items():
        if key not in theirs:
            return f"the notebook's model has {key!r} {shape}, model_def.py's has no such entry"
        if theirs[key] != shape:
            return f"{key!r} has shape {shape} in the notebook but {theirs[key]} from model_def.py"
    for key, shape in theirs.items():
        if key not in ours:
            return f"model_def.py's model has an extra entry {key!r} {shape}"
    if notebook["param_count"] != fresh["param_count"]:
        return f"{notebook['param_count']:,} parameters in the notebook, {fresh['param_count']:,} from model_def.py"
    return None


def _failure_message(class_name: str, fresh: dict[str, Any], shape: tuple[int, ...] | None) -> str:
    stage, error = fresh["stage"], fresh["error"]
    if fresh.get("file") and stage in ("import", "init", "forward"):
        step = {"import": "model_def.py", "init": f"{class_name}()", "forward": f"{class_name}'s forward pass"}[stage]
        return (
            f"{step} needs the file {fresh['file']!r}, which a clean Python process (as on an FL site) does not "
            f"have ({error}): FL sites get only model_def.py and their shard, so write what {class_name} needs "
            "from that file into the cell (a constant or an __init__ default)"
        )
    if stage == "forward":
        return (
            f"{class_name} forward pass on input shape {shape} failed: {error}: "
            "check the layer sizes or give the right --input-shape"
        )
    if stage == "init" and error.startswith("TypeError"):
        return (
            f"{class_name}() failed: {error}: FL sites build the model as {class_name}(), "
            "so give every __init__ argument a default"
        )
    if stage == "import" and error.startswith(("ModuleNotFoundError", "ImportError")):
        return (
            f"model_def.py for {class_name} {_STAGE_FIX[stage]}: {error}: install that package where the sites run, "
            "or define what the model needs in the notebook (a file next to the notebook is not on the sites)"
        )
    return (
        f"model_def.py for {class_name} {_STAGE_FIX.get(stage, 'fails')}: {error}: "
        "fix the cell so the class is defined by its own imports and helpers"
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
