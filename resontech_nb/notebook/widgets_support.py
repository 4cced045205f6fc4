"""The widget library the kernel has: a floor of ipywidgets 7.6 (what Colab ships is 7.7.1), and on Colab with
ipywidgets 8 its custom widget manager, without which 8.x widgets stay blank there."""

from __future__ import annotations

import logging

from IPython.core.error import UsageError

from ..errors import ConfigError

log = logging.getLogger(__name__)

MIN_IPYWIDGETS = (7, 6)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_ipywidgets(version: str | None = None) -> tuple[int, ...]:
    """The installed ipywidgets' (major, minor); ``ConfigError`` naming the fix when older than 7.6."""
    if version is None:
        import ipywidgets

        version = ipywidgets.__version__
    found = _version(version)
    if found < MIN_IPYWIDGETS:
        raise ConfigError(
            f"resontech_nb needs ipywidgets 7.6 or newer, this kernel has {version}: "
            "run  %pip install 'ipywidgets>=7.6'  and restart the kernel"
        )
    return found


def enable_colab_widgets(major: int) -> bool:
    """On Colab with ipywidgets 8, turn on its custom widget manager; returns whether it did."""
    if major < 8:
        return False  # Colab's own widget manager renders 7.x
    try:
        from google.colab import output  # type: ignore[import-not-found]
    except ImportError:
        return False
    output.enable_custom_widget_manager()
    log.info("enabled Colab's custom widget manager (ipywidgets 8)")
    return True


def prepare_widgets() -> None:
    """What ``%load_ext resontech_nb`` does for the widgets before registering the magics; a too old ipywidgets
    is one ``UsageError`` line naming the fix, not a traceback."""
    try:
        major = check_ipywidgets()[0]
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    enable_colab_widgets(major)
