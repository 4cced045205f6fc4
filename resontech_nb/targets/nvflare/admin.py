"""The admin link to an NVFlare deployment: one FLARE API session per target, shared and reopened.

Commands are serialized; NVFlare's errors become resontech_nb's. Sessions are closed when nothing
uses them and before the interpreter exits (an open session keeps a non-daemon thread busy).
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ...errors import (
    AuthError,
    ConfigError,
    DeploymentUnreachableError,
    JobNotFoundError,
    NVFlareError,
    ResonTechError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def _unreachable_message(kit: Path) -> str:
    return f"cannot reach the NVFlare server with the startup kit at {kit}: is it running? (nvflare poc start)"


class AdminLink:
    """A FLARE API session opened on first use, reopened once when the server dropped it.

    Commands are serialized: a dashboard polling from a thread and the notebook share it.
    """

    def __init__(self, startup_kit: Path, username: str, connect_timeout: float = 10.0) -> None:
        self.startup_kit = startup_kit
        self.username = username
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._box: dict[str, Any] = {"session": None}
        # Closed when nothing refers to the link any more, and before the interpreter joins its
        # threads at exit: an open session keeps a non-daemon NVFlare connector thread busy.
        self._finalizer = weakref.finalize(self, _close_box, self._box)
        self._finalizer.atexit = False
        _LIVE_BOXES[id(self._box)] = self._box
        weakref.finalize(self, _LIVE_BOXES.pop, id(self._box), None).atexit = False
        _install_exit_hook()

    def call(self, action: Callable[[Any], T], error: type[ResonTechError] | None = None) -> T:
        """Run ``action(session)``; map NVFlare's errors onto resontech_nb's (``error`` replaces the
        class of connection and command failures, e.g. ``SubmitError`` while submitting)."""
        from nvflare.fuel.flare_api.api_spec import (
            AuthenticationError,
            AuthorizationError,
            InternalError,
            JobNotFound,
            NoConnection,
            NoReply,
            SessionClosed,
        )

        with self._lock:
            for attempt in (1, 2):
                try:
                    session = self._box["session"] or self._open()
                    return action(session)
                except (NoConnection, SessionClosed, NoReply) as exc:
                    self._drop()
                    if attempt == 2 or isinstance(exc, NoConnection) and self._box.get("fresh"):
                        raise (error or DeploymentUnreachableError)(_unreachable_message(self.startup_kit)) from None
                except (InternalError, RuntimeError) as exc:
                    raise (error or NVFlareError)(
                        f"the NVFlare server answered with an error: {exc}; see the server's log.txt"
                    ) from None
                except AuthenticationError as exc:
                    self._drop()
                    raise AuthError(
                        f"the NVFlare server rejected the startup kit at {self.startup_kit} ({exc}): "
                        "use an admin startup kit provisioned for this project"
                    ) from None
                except AuthorizationError as exc:
                    raise AuthError(
                        f"user {self.username!r} is not allowed to do this on the NVFlare server ({exc}); "
                        "jobs from resontech_nb ship custom code, so the user's role needs bring-your-own-code "
                        "rights on every site (see the sites' local/authorization.json)"
                    ) from None
                except JobNotFound as exc:
                    raise JobNotFoundError(
                        f"the NVFlare server knows no such job ({exc}): check the id (%fl_status)"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _open(self) -> Any:
        from nvflare.fuel.common.excepts import ConfigError as KitError
        from nvflare.fuel.flare_api.api_spec import NoConnection

        try:
            session = open_session(self.startup_kit, self.username, self.connect_timeout)
        except NoConnection:
            self._box["fresh"] = True
            raise
        except (OSError, ValueError, AssertionError, KeyError, KitError) as exc:
            raise ConfigError(
                f"cannot use the NVFlare startup kit at {self.startup_kit} ({exc}): point "
                "%fl_config nvflare_startup_kit=... at an admin startup kit folder"
            ) from None
        self._box.update(session=session, fresh=False)
        log.debug("FLARE API session open with %s", self.startup_kit)
        return session

    def _drop(self) -> None:
        _close_box(self._box)


def open_session(startup_kit: Path, username: str, timeout: float) -> Any:
    """A connected FLARE API session, opened without NVFlare's chatter.

    NVFlare prints "Connecting to FLARE ..." on stdout and logs every failed connection attempt
    as an error; neither belongs under a notebook cell (a failure raises ``NoConnection``).
    """
    from nvflare.fuel.flare_api.flare_api import new_secure_session

    nvflare_logger = logging.getLogger("nvflare")
    level = nvflare_logger.level
    nvflare_logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return new_secure_session(username, str(startup_kit), timeout=timeout)
    finally:
        nvflare_logger.setLevel(level)


def _close_box(box: dict[str, Any]) -> None:
    session, box["session"] = box.get("session"), None
    if session is not None:
        with contextlib.suppress(Exception):
            session.close()


_LIVE_BOXES: dict[int, dict[str, Any]] = {}
_exit_hook: list[bool] = []


def _close_all_sessions() -> None:
    for box in list(_LIVE_BOXES.values()):
        _close_box(box)


def _install_exit_hook() -> None:
    """Close every session when the main thread ends, before non-daemon threads are joined
    (``atexit`` would run after that join, which then waits forever)."""
    if _exit_hook:
        return
    _exit_hook.append(True)
    # Hooks run last-registered first: concurrent.futures' pool join must be registered before ours.
    import concurrent.futures.thread  # noqa: F401

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading exit hook")
        register(_close_all_sessions)
    except RuntimeError:
        import atexit

        atexit.register(_close_all_sessions)
