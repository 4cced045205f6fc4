"""The ``resontech-nb`` command: a small dispatcher over subcommands.

``resontech-nb quickstart`` run the quickstart notebook here (synthetic data, the local target), keep its results
``resontech-nb notebooks``  copy the example notebooks out of the package into a folder
``resontech-nb serve``     run the reference platform (``--embedded-s3`` for a one-command try)
``resontech-nb add-user``  add a platform user (password from an env var or a prompt)
``resontech-nb s3-env``    print the embedded S3 server's credentials as ``export`` lines, for the host's own tools
                          (backups, inspecting the bucket); notebook users need no S3 keys

Passwords are read from environment variables or prompts, never from the command line
(which other users of the machine can see in the process list).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_PASSWORD_ENV = "RESONTECH_PLATFORM_PASSWORD"
DEFAULT_DATA = "~/.resontech_nb/platform"
EMBEDDED_S3_DIR = "s3"
CREDENTIALS_FILE = "s3-credentials.json"  # as in platform/embedded_s3.py, without importing boto3 here


def _password_for(email: str, env_name: str | None) -> str:
    name = env_name or DEFAULT_PASSWORD_ENV
    password = os.environ.get(name)
    if password:
        return password
    if env_name:
        raise SystemExit(f"error: environment variable {name} (password for {email}) is not set")
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {email}: ")
    raise SystemExit(f"error: set {DEFAULT_PASSWORD_ENV} to the password for {email}")


def _parse_user(value: str) -> tuple[str, str | None]:
    """``EMAIL`` or ``EMAIL:ENV_VAR`` (the env var holding that user's password)."""
    email, _, env_name = value.partition(":")
    if "@" not in email:
        raise argparse.ArgumentTypeError(f"{value!r}: expected EMAIL or EMAIL:ENV_VAR")
    return email, env_name or None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # leaves serve_forever through its clean-up path


def _serve(args: argparse.Namespace) -> int:
    try:
        import flask  # noqa: F401
        import waitress  # noqa: F401

        from .platform.embedded_s3 import EmbeddedS3
    except ImportError as exc:
        raise SystemExit(
            f"error: the platform server needs {exc.name or 'flask'}: pip install 'resontech_nb[server]'"
        ) from None

    if not args.embedded_s3 and not args.bucket:
        raise SystemExit("error: give --bucket (and --s3-endpoint for non-AWS S3), or --embedded-s3 for a local try")
    embedded = None
    if args.embedded_s3:
        s3_dir = Path(args.data).expanduser() / EMBEDDED_S3_DIR
        embedded = EmbeddedS3(s3_dir, bucket=args.bucket or "resontech-nb", port=args.s3_port).start()
        os.environ.update(embedded.env())  # the platform reads job files with the store's own keys
        endpoint, bucket = embedded.endpoint_url, embedded.bucket
    else:
        endpoint, bucket = args.s3_endpoint or "", args.bucket
    try:
        return _run_platform(args, endpoint, bucket, embedded)
    finally:
        if embedded is not None:
            embedded.stop()


def _run_platform(args: argparse.Namespace, endpoint: str, bucket: str, embedded: object) -> int:
    from .platform import PlatformServer
    from .platform.sandbox import SandboxError, SandboxLimits

    limits = SandboxLimits(
        memory_bytes=int(args.job_memory_gib * 1024**3),
        processes=args.job_processes,
        cpu_seconds=args.job_cpu_seconds,
        wall_seconds=args.job_wall_seconds,
    )
    try:
        server = PlatformServer(
            args.data,
            host=args.host,
            port=args.port,
            s3_endpoint=endpoint,
            bucket=bucket,
            s3_region=args.s3_region,
            nvflare_startup_kit=args.nvflare_startup_kit,
            nvflare_username=args.nvflare_username,
            threads=args.threads,
            max_running=args.max_running,
            token_ttl_s=args.token_ttl,
            limits=limits,
            unsafe_single_user=args.unsafe_single_user,
        )
    except SandboxError as exc:
        raise SystemExit(f"error: {exc}") from None
    users = [(email, _password_for(email, env_name)) for email, env_name in args.add_user]
    for name in {DEFAULT_PASSWORD_ENV, *(env_name for _, env_name in args.add_user if env_name)}:
        os.environ.pop(name, None)  # read once: never in the server's environment again
    for email, password in users:
        try:
            server.add_user(email, password)
        except ValueError as exc:
            raise SystemExit(f"error: cannot add {email}: {exc}") from None
    server.bind()
    print(f"ResonTech platform serving at {server.url} (data in {server.data_dir})", flush=True)
    print(f"In a notebook:  %fl_config target=resontech base_url={server.url} email=YOU@EXAMPLE.COM", flush=True)
    print(
        f"Notebook users need no S3 keys: the platform hands out upload URLs for their own objects, and those "
        f"point at {endpoint or 'AWS S3'} (bucket {bucket}), which notebook users must be able to reach.",
        flush=True,
    )
    if embedded is not None:
        print(
            f"Embedded S3 (SeaweedFS, data in {embedded.data_dir}): its keys are in "
            f"{embedded.data_dir / CREDENTIALS_FILE} (readable only by you), for your own tools only (backups, "
            f'inspection):  eval "$(resontech-nb s3-env --data {server.data_dir})". Never give them to users.',
            flush=True,
        )
    if not server.store.users():
        print("No users yet: add one with  resontech-nb add-user EMAIL --data " + str(server.data_dir), flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    server.serve_forever()
    return 0


def _s3_env(args: argparse.Namespace) -> int:
    import json
    import shlex

    path = Path(args.data).expanduser() / EMBEDDED_S3_DIR / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SystemExit(
            f"error: no embedded S3 credentials at {path}: start resontech-nb serve --embedded-s3 first"
        ) from None
    print(f"export AWS_ACCESS_KEY_ID={shlex.quote(data['access_key'])}")
    print(f"export AWS_SECRET_ACCESS_KEY={shlex.quote(data['secret_key'])}")
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from .platform.store import Store

    store = Store(Path(args.data).expanduser() / "platform.sqlite3")
    try:
        store.add_user(args.email, _password_for(args.email, args.password_env))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        store.close()
    print(f"user {args.email} added")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from .quickstart import run_quickstart

    return run_quickstart(args.out, args.rounds)


def _notebooks(args: argparse.Namespace) -> int:
    from .quickstart import copy_notebooks

    copy_notebooks(args.folder)
    return 0


def _version() -> str:
    from . import __version__

    return f"resontech-nb {__version__} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resontech-nb",
        description=__doc__.splitlines()[0],
        epilog="resontech-nb COMMAND --help shows the options of one command.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quickstart = commands.add_parser(
        "quickstart", help="run the quickstart here: synthetic data, local target, a line per round"
    )
    quickstart.add_argument("--out", default="quickstart-output", help="folder for the results (default %(default)s)")
    quickstart.add_argument("--rounds", type=int, default=None, help="federated rounds (default: the notebook's 4)")
    quickstart.set_defaults(func=_quickstart, log_level="WARNING")

    notebooks = commands.add_parser("notebooks", help="copy the example notebooks into a folder")
    notebooks.add_argument("folder", help="where to put them (made if missing; existing files are kept)")
    notebooks.set_defaults(func=_notebooks)

    serve = commands.add_parser("serve", help="run the reference ResonTech platform server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--data", default=DEFAULT_DATA, help=f"state folder (default {DEFAULT_DATA})")
    s3 = serve.add_mutually_exclusive_group()
    s3.add_argument("--s3-endpoint", default="", help="S3-compatible endpoint URL (empty: AWS)")
    s3.add_argument(
        "--embedded-s3",
        action="store_true",
        help="also start a persistent S3 server (SeaweedFS) on loopback, data under DATA/s3",
    )
    serve.add_argument("--s3-port", type=int, default=0, help="port of the embedded S3 (default: a free one)")
    serve.add_argument("--bucket", default="", help="bucket the job files are read from")
    serve.add_argument("--s3-region", default="us-east-1")
    serve.add_argument(
        "--nvflare-startup-kit",
        default="",
        help="run jobs on this NVFlare deployment (an admin startup kit folder) instead of the simulator",
    )
    serve.add_argument("--nvflare-username", default="admin@nvidia.com", help="admin user of that startup kit")
    serve.add_argument("--threads", type=int, default=8, help="HTTP worker threads (default 8)")
    serve.add_argument(
        "--max-running", type=int, default=None, help="jobs running at once, the rest wait QUEUED (default: CPU count)"
    )
    serve.add_argument("--token-ttl", type=float, default=12 * 3600, help="session lifetime in seconds (default 12 h)")
    serve.add_argument(
        "--add-user",
        action="append",
        default=[],
        type=_parse_user,
        metavar="EMAIL[:ENV_VAR]",
        help=f"add a user; the password comes from ENV_VAR (default {DEFAULT_PASSWORD_ENV})",
    )
    serve.add_argument(
        "--unsafe-single-user",
        action="store_true",
        help="where no sandbox (bubblewrap) works, run jobs unconfined with the server's rights: only for one user "
        "running their own code (any job could read the database, the S3 keys and every other job)",
    )
    serve.add_argument("--job-memory-gib", type=float, default=16, help="address space per job process (default 16)")
    serve.add_argument("--job-processes", type=int, default=2048, help="processes + threads per job (default 2048)")
    serve.add_argument("--job-cpu-seconds", type=int, default=24 * 3600, help="CPU seconds per job process")
    serve.add_argument("--job-wall-seconds", type=float, default=24 * 3600, help="wall time per job (default 24 h)")
    serve.set_defaults(func=_serve)

    add_user = commands.add_parser("add-user", help="add a platform user or reset a password")
    add_user.add_argument("email")
    add_user.add_argument("--data", default=DEFAULT_DATA)
    add_user.add_argument("--password-env", default=None, help=f"env var holding the password ({DEFAULT_PASSWORD_ENV})")
    add_user.set_defaults(func=_add_user)

    s3_env = commands.add_parser(
        "s3-env", help="print the embedded S3 server's keys as export lines (host tools only: users need none)"
    )
    s3_env.add_argument("--data", default=DEFAULT_DATA)
    s3_env.set_defaults(func=_s3_env)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "quickstart": _quickstart,
    "notebooks": _notebooks,
    "serve": _serve,
    "add-user": _add_user,
    "s3-env": _s3_env,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
