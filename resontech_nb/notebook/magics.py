"""The IPython magics: each parses its line, calls one Python API function and shows the result.

``%load_ext resontech_nb`` registers ``FLMagics``. Its settings are traitlets too (``SessionSettings``
in settings.py), so ``%config FLMagics.batch_size = 16`` works next to ``%fl_config batch_size=16``. Every
``ResonTechError`` (and config ``ValueError``) becomes a one-line ``UsageError``, never a traceback.
"""

from __future__ import annotations

import ast
import getpass
import logging
import shlex
import warnings
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..capture import EVAL_FN_NAME, TRAIN_FN_NAME, ModelSpec, capture
from ..config.settings import SECRET_FIELDS, ResonTechConfig
from ..errors import CaptureWarning
from ..warming import warm_up
from .lines import (
    attach_negative_values,
    cell_model_class,
    defined_names,
    parse_line,
    parse_shape,
    state_dict_variable,
    usage_errors,
)
from .settings import SUBMIT_FLAGS, SessionSettings, config_flag_arguments, section_of

log = logging.getLogger(__name__)

DEFAULT_JOB_VAR = "fl_job"
MODEL_VAR = "fl_model"


@magics_class
class FLMagics(Magics, SessionSettings):
    """Federated training of a notebook's PyTorch model with NVIDIA FLARE."""

    # -- %%fl_model ----------------------------------------------------------------------------
    @cell_magic
    @magic_arguments()
    @argument("--name", help="The model class, when the cell defines several nn.Module subclasses")
    @argument("--input-shape", help="Run one forward pass on CPU with this input shape, e.g. 1,3,32,32")
    @usage_errors
    def fl_model(self, line: str, cell: str) -> None:
        """Run the cell, then capture its nn.Module subclass (and fl_train_model) into ``fl_model``."""
        args = parse_line(self.fl_model, attach_negative_values(line))
        input_shape = parse_shape(args.input_shape)
        warm_up(self.target)  # the clean process for preflight (and a local job's simulator) import torch meanwhile
        python = self.shell.transform_cell(cell)
        try:
            tree = ast.parse(python)
        except SyntaxError as exc:
            raise UsageError(
                f"syntax error in the cell, line {exc.lineno}: {exc.msg}; fix it and run the cell again "
                f"({MODEL_VAR} is unchanged)"
            ) from None
        result = self.shell.run_cell(cell)
        if not result.success:
            raise UsageError(
                f"the cell raised an error (shown above): fix it and run it again ({MODEL_VAR} is unchanged)"
            )
        model_cls = cell_model_class(tree, self.shell.user_ns, args.name)
        defined = defined_names(tree)
        train_fn = self.shell.user_ns.get(TRAIN_FN_NAME) if TRAIN_FN_NAME in defined else None
        eval_fn = self.shell.user_ns.get(EVAL_FN_NAME) if EVAL_FN_NAME in defined else None
        with warnings.catch_warnings():  # the summary shown below lists capture's warnings
            warnings.simplefilter("ignore", CaptureWarning)
            spec = capture(
                model_cls, train_fn, eval_fn, namespace=self.shell.user_ns, input_shape=input_shape, cell_source=python
            )
        self.shell.user_ns[MODEL_VAR] = spec
        _show(spec)

    # -- %fl_config / %fl_login ------------------------------------------------------------------
    @line_magic
    @usage_errors
    def fl_config(self, line: str) -> None:
        """Show the session's settings, or set them: ``%fl_config batch_size=16 num_rounds=3``.

        The password is never shown and cannot be set here: use ``%fl_login``.
        """
        tokens = shlex.split(line)
        if not tokens:
            print(self._settings_text())
            return
        changes: dict[str, str] = {}
        for token in tokens:
            key, sep, value = token.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise UsageError(f"expected key=value, got {token!r} (e.g. %fl_config batch_size=16)")
            if key in SECRET_FIELDS:
                raise UsageError(
                    "the password is not set with %fl_config (it would be saved in the notebook): "
                    "use %fl_login, which asks for it"
                )
            if key != "target" and section_of(key) is None:
                known = sorted(["target", *self.trait_names(config=True)])
                raise UsageError(f"unknown setting {key!r}; known settings: {', '.join(known)}")
            changes[key] = value
        notes = self.apply_settings(changes)
        print("set " + ", ".join(f"{k}={self._shown(k)}" for k in changes))
        for note in notes:
            print(f"note: {note}")

    @line_magic
    @magic_arguments()
    @argument("--email", help="Account email (else the configured one)")
    @argument("--base-url", help="Platform REST API URL (else the configured one)")
    @usage_errors
    def fl_login(self, line: str) -> None:
        """Ask for the platform password (getpass) and keep it in memory for this session only."""
        args = parse_argstring(self.fl_login, line)
        changes = {k: v for k, v in (("email", args.email), ("base_url", args.base_url)) if v}
        config = self.resontech.replace(**changes)
        who = config.email or "your account"
        try:
            password = getpass.getpass(f"ResonTech password for {who}: ")
        except StdinNotImplementedError:
            raise UsageError(
                "this front-end cannot prompt for a password: set RESONTECH_PASSWORD in the kernel's environment"
            ) from None
        if not password:
            raise UsageError("no password entered: run %fl_login again")
        config = config.replace(password=password)
        logged_in = self._platform_login(config)
        self.resontech = config
        for key in changes:
            setattr(self, key, getattr(config, key))
        if logged_in:
            print(f"logged in to {config.base_url} as {config.email}")
        else:
            print(f"password kept in memory for this session (for {who}); it is not saved anywhere")

    def _platform_login(self, config: ResonTechConfig) -> bool:
        if not config.base_url:
            return False
        try:
            from ..targets.resontech.rest import PlatformClient
        except ImportError:  # pragma: no cover - the REST client ships with the package
            return False
        PlatformClient(config).login()
        return True

    # -- %fl_submit ------------------------------------------------------------------------------
    @line_magic
    @magic_arguments()
    @argument("--shards", help="Folder of shard ZIPs (one site per ZIP) or one shard ZIP")
    @config_flag_arguments
    @argument("--init-weights", metavar="VAR", help="Start round 0 from the state_dict in this variable")
    @argument("--target", help="local (default), nvflare or resontech")
    @argument("--wait", action="store_true", help="Block until the job ends, with the live dashboard")
    @argument("--build-only", metavar="DIR", help="Only write the NVFlare job folder to DIR; submit nothing")
    @argument("--as", dest="as_var", metavar="VAR", default=DEFAULT_JOB_VAR, help="Variable for the Job")
    @usage_errors
    def fl_submit(self, line: str) -> None:
        """Build the NVFlare job from ``fl_model`` and the shards, submit it and show the dashboard."""
        args = parse_line(self.fl_submit, line)
        spec = self.shell.user_ns.get(MODEL_VAR)
        if not isinstance(spec, ModelSpec):
            raise UsageError(f"no captured model: run a %%fl_model cell first (it binds {MODEL_VAR})")
        if not args.shards:
            raise UsageError("give the data with --shards PATH (a folder of shard ZIPs or one ZIP)")
        if not args.as_var.isidentifier():
            raise UsageError(
                f"--as {args.as_var!r} is not a valid variable name: use letters, digits and _, e.g. --as job1"
            )
        changes: dict[str, dict[str, Any]] = {"training": {}, "federation": {}}
        for flag, (section, name) in SUBMIT_FLAGS.items():
            value = getattr(args, flag)
            if value is not None:
                changes[section][name] = value
        training = self.training.replace(**changes["training"])
        federation = self.federation.replace(**changes["federation"])
        initial_weights = state_dict_variable(self.shell.user_ns, args.init_weights) if args.init_weights else None
        from .. import api

        if args.build_only:
            path = api.build_job(
                spec, args.shards, training, federation, out=args.build_only, initial_weights=initial_weights
            )
            print(f"job folder written to {path} (nothing submitted)")
            return
        target = args.target or self.target
        job = api.submit(
            spec,
            args.shards,
            training=training,
            federation=federation,
            target=target,
            config=self.resontech,
            initial_weights=initial_weights,
        )
        self.shell.user_ns[args.as_var] = job
        print(f"submitted job {job.id} to target {target}; the handle is {args.as_var}")
        job.dashboard(wait=args.wait)

    # -- %fl_data -----------------------------------------------------------------------------------
    @line_magic
    @magic_arguments()
    @argument("--shards", default="shards", help="Folder of shard ZIPs or one ZIP (default: shards, split_shards')")
    @argument("--min-count", type=int, default=0, help="Withhold a count below this (a label bin, a split's rows)")
    @argument("--target", default=None, help="Count on the sites of this target (local, nvflare): only counts return")
    @usage_errors
    def fl_data(self, line: str) -> None:
        """Each site's rows, labels and images before training: a table, a heatmap and how skewed the split is."""
        args = parse_line(self.fl_data, line)
        from ..api import data_summary

        summary = data_summary(
            args.shards, self.training, target=args.target, config=self.resontech, min_count=args.min_count
        )
        self.shell.user_ns["fl_data"] = summary
        _show(summary)

    # -- %fl_status / %fl_dashboard / %fl_abort ----------------------------------------------------
    @line_magic
    @magic_arguments()
    @argument("job", nargs="?", help=f"Variable holding a Job, or a job id (default: {DEFAULT_JOB_VAR})")
    @usage_errors
    def fl_status(self, line: str) -> None:
        """Print one line on the job: status, round k of N, latest global loss."""
        args = parse_line(self.fl_status, line)
        print(self._job(args.job).summary())

    @line_magic
    @magic_arguments()
    @argument("job", nargs="?", help=f"Variable holding a Job, or a job id (default: {DEFAULT_JOB_VAR})")
    @argument("--wait", action="store_true", help="Block until the job ends")
    @usage_errors
    def fl_dashboard(self, line: str) -> None:
        """Show the live dashboard of a job (also one submitted before a kernel restart)."""
        args = parse_line(self.fl_dashboard, line)
        self._job(args.job).dashboard(wait=args.wait)

    @line_magic
    @magic_arguments()
    @argument("job", nargs="?", help=f"Variable holding a Job, or a job id (default: {DEFAULT_JOB_VAR})")
    @usage_errors
    def fl_abort(self, line: str) -> None:
        """Stop a running job and everything it started."""
        args = parse_line(self.fl_abort, line)
        job = self._job(args.job)
        job.abort()
        print(job.summary())

    @line_magic
    @magic_arguments()
    @argument("jobs", nargs="+", help="Variables holding Jobs, or job ids")
    @argument("--metric", default="accuracy", help="The metric drawn and compared (default: accuracy)")
    @usage_errors
    def fl_compare(self, line: str) -> None:
        """Compare jobs: one figure of the metric per round (best round marked) and a table of what differs."""
        args = parse_line(self.fl_compare, line)
        from .. import api

        api.compare([self._job(ref) for ref in args.jobs], metric=args.metric)

    def _job(self, ref: str | None) -> Any:
        from ..job.handle import Job

        user_ns = self.shell.user_ns
        if ref is None:
            job = user_ns.get(DEFAULT_JOB_VAR)
            if job is None:
                raise UsageError("no job yet: run %fl_submit first, or give a job id (%fl_status JOB_ID)")
        elif ref.isidentifier() and ref in user_ns:
            job = user_ns[ref]
        else:
            from .. import api

            return api.attach(ref, config=self.resontech)
        if not isinstance(job, Job):
            name = ref or DEFAULT_JOB_VAR
            raise UsageError(f"{name} is a {type(job).__name__}, not a Job: pass a job variable or a job id")
        return job


def _show(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def register(ipython: Any) -> FLMagics:
    """Register the magics (``%load_ext resontech_nb``); returns the instance so ``%config`` finds it."""
    unregister(ipython)
    magics = FLMagics(shell=ipython)  # Magics.__init__ adds it to ipython.configurables
    ipython.register_magics(magics)
    return magics


def unregister(ipython: Any) -> None:
    """Remove our magics and their ``%config`` entry (``%unload_ext resontech_nb``)."""
    for magics in [c for c in ipython.configurables if isinstance(c, FLMagics)]:
        ipython.configurables.remove(magics)
    manager = ipython.magics_manager
    for kind, names in FLMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(FLMagics.__name__, None)
