"""The ``resontech-nb`` command: a small dispatcher over subcommands.

``resontech-nb serve``     run the reference platform (``--embedded-s3`` for a one-command try)
``resontech-nb add-user``  add a platform user (password from an env var or a prompt)

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
        from .platform import PlatformServer
        from .platform.loopback import EmbeddedS3
    except ImportError as exc:
        raise SystemExit(
            f"error: the platform server needs {exc.name or 'flask'}: pip install 'resontech_nb[server]'"
        ) from None

    if not args.embedded_s3 and not args.bucket:
        raise SystemExit("error: give --bucket (and --s3-endpoint for non-AWS S3), or --embedded-s3 for a local try")
    embedded = None
    if args.embedded_s3:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "embedded")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "embedded")
        embedded = EmbeddedS3(bucket=args.bucket or "resontech-nb", port=args.s3_port).start()
        endpoint, bucket = embedded.endpoint_url, embedded.bucket
    else:
        endpoint, bucket = args.s3_endpoint or "", args.bucket
    server = PlatformServer(
        args.data,
        host=args.host,
        port=args.port,
        s3_endpoint=endpoint,
        bucket=bucket,
        s3_region=args.s3_region,
        nvflare_startup_kit=args.nvflare_startup_kit,
        nvflare_username=args.nvflare_username,
    )
    for email, env_name in args.add_user:
        try:
            server.add_user(email, _password_for(email, env_name))
        except ValueError as exc:
            raise SystemExit(f"error: cannot add {email}: {exc}") from None
    server.bind()
    settings = [f"base_url={server.url}", f"s3_bucket={bucket}"]
    if endpoint:
        settings.insert(1, f"s3_endpoint_url={endpoint}")
    print(f"ResonTech platform serving at {server.url} (data in {server.data_dir})", flush=True)
    print(f"In a notebook:  %fl_config {' '.join(settings)} email=YOU@EXAMPLE.COM", flush=True)
    if embedded is not None:
        print(
            "Embedded S3 (moto, in memory): set AWS_ACCESS_KEY_ID=embedded AWS_SECRET_ACCESS_KEY=embedded "
            "in the notebook's environment",
            flush=True,
        )
    if not server.store.users():
        print("No users yet: add one with  resontech-nb add-user EMAIL --data " + str(server.data_dir), flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        server.serve_forever()
    finally:
        if embedded is not None:
            embedded.stop()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resontech-nb", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the reference ResonTech platform server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--data", default=DEFAULT_DATA, help=f"state folder (default {DEFAULT_DATA})")
    s3 = serve.add_mutually_exclusive_group()
    s3.add_argument("--s3-endpoint", default="", help="S3-compatible endpoint URL (empty: AWS)")
    s3.add_argument("--embedded-s3", action="store_true", help="also start an in-memory S3 (moto) on loopback")
    serve.add_argument("--s3-port", type=int, default=0, help="port of the embedded S3 (default: a free one)")
    serve.add_argument("--bucket", default="", help="bucket the job files are read from")
    serve.add_argument("--s3-region", default="us-east-1")
    serve.add_argument(
        "--nvflare-startup-kit",
        default="",
        help="run jobs on this NVFlare deployment (an admin startup kit folder) instead of the simulator",
    )
    serve.add_argument("--nvflare-username", default="admin@nvidia.com", help="admin user of that startup kit")
    serve.add_argument(
        "--add-user",
        action="append",
        default=[],
        type=_parse_user,
        metavar="EMAIL[:ENV_VAR]",
        help=f"add a user; the password comes from ENV_VAR (default {DEFAULT_PASSWORD_ENV})",
    )
    serve.set_defaults(func=_serve)

    add_user = commands.add_parser("add-user", help="add a platform user or reset a password")
    add_user.add_argument("email")
    add_user.add_argument("--data", default=DEFAULT_DATA)
    add_user.add_argument("--password-env", default=None, help=f"env var holding the password ({DEFAULT_PASSWORD_ENV})")
    add_user.set_defaults(func=_add_user)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"serve": _serve, "add-user": _add_user}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one line per HTTP request (S3 included) only when debugging
    logging.getLogger("werkzeug").setLevel(logging.INFO if level == "DEBUG" else logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
