"""The session's settings behind the magics: one traitlets trait per config field, kept in step with the configs.

``SessionSettings`` holds the session's ``ResonTechConfig``, ``TrainingConfig`` and ``FederationConfig``
and the ``target``. Its traits are generated from the config classes' fields (all but the password,
which only ``%fl_login`` sets), with the help texts the fields declare, so ``%config FLMagics.batch_size = 16``
and ``%fl_config batch_size=16`` both go through the config class's validation; ``%fl_submit``'s flags come
from the fields that declare one. A new config field needs nothing here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import fields
from typing import Any

from IPython.core.magic_arguments import argument
from traitlets import Bool, Float, Int, TraitError, TraitType, Unicode, validate
from traitlets.config import Configurable

from ..config.settings import SECRET_FIELDS, FederationConfig, ResonTechConfig, TrainingConfig
from ..fields import setting_of

log = logging.getLogger(__name__)

CONFIG_CLASSES = {"resontech": ResonTechConfig, "training": TrainingConfig, "federation": FederationConfig}



def submit_flags() -> dict[str, tuple[str, str]]:
    """``%fl_submit``'s config flags: the argparse dest (``min_clients``) -> (config section, field)."""
    flags: dict[str, tuple[str, str]] = {}
    for section, cls in CONFIG_CLASSES.items():
        for name, described in cls.settings().items():
            flag = described.flag_name(name)
            if flag is not None:
                flags[flag.replace("-", "_")] = (section, name)
    return flags


SUBMIT_FLAGS = submit_flags()
_ARGPARSE_TYPES = {"int": int, "float": float, "str": str}


def config_flag_arguments(func: Any) -> Any:
    """Decorate a magic with an ``argument`` for each config flag (``--rounds``: ``FederationConfig.num_rounds``)."""
    classes = {section: cls for section, cls in CONFIG_CLASSES.items()}
    for dest, (section, name) in reversed(SUBMIT_FLAGS.items()):  # IPython lists them in the order applied, reversed
        cls = classes[section]
        described = cls.settings()[name]
        flag = "--" + dest.replace("_", "-")
        where = f"{cls.__name__}.{name}"
        if described.kind == "bool":
            func = argument(flag, action="store_true", default=None, help=f"{described.help} ({where})")(func)
        else:
            kind = _ARGPARSE_TYPES[described.kind]
            func = argument(flag, type=kind, help=f"{described.help} ({where})")(func)
    return func

_TRAIT_TYPES: dict[str, type[TraitType]] = {"int": Int, "float": Float, "str": Unicode, "bool": Bool}


def section_of(key: str) -> str | None:
    """The config section (``resontech``, ``training``, ``federation``) that has the field ``key``."""
    for section, cls in CONFIG_CLASSES.items():
        if key in cls.field_names():
            return section
    return None


def _config_traits() -> dict[str, TraitType]:
    """A configurable trait for each config field but the secrets: the field's type, default and help."""
    traits: dict[str, TraitType] = {}
    for cls in CONFIG_CLASSES.values():
        for f in fields(cls):
            if f.name in SECRET_FIELDS:
                continue
            kind = _TRAIT_TYPES[getattr(f.type, "__name__", str(f.type))]  # "int" under postponed annotations
            traits[f.name] = kind(f.default, help=setting_of(f).help).tag(config=True)
    return traits


_CONFIG_TRAITS = _config_traits()


class SessionSettings(Configurable):
    """The session's configs and ``target``, one trait per setting (a mixin: ``FLMagics`` derives from it)."""

    target = Unicode("local", help="Where %fl_submit runs jobs: local, nvflare or resontech").tag(config=True)
    # traitlets registers the traits in the class body when the class is created, so the generated ones go here.
    locals().update(_CONFIG_TRAITS)

    def __init__(self, **kwargs: Any) -> None:
        # The session's configs: defaults < config file < RESONTECH_* env; traits (%config) override them.
        self.resontech = ResonTechConfig.load()
        self.training = TrainingConfig.load()
        self.federation = FederationConfig.load()
        own = type(self).__name__
        parent = kwargs.get("parent")
        config = kwargs.get("config") if kwargs.get("config") is not None else getattr(parent, "config", None)
        section = config[own] if config is not None and own in config else {}
        self._drop_invalid_settings(section)
        super().__init__(**kwargs)
        configured = set(section)
        for name in CONFIG_CLASSES:
            for key, value in getattr(self, name).to_dict().items():
                if key not in configured:
                    setattr(self, key, value)

    def _drop_invalid_settings(self, section: Any) -> None:
        """Skip (with a warning) invalid values in the IPython config, so %load_ext still works."""
        for key in list(section):
            value = section[key]
            try:
                if key == "target":
                    self._validate_target({"value": value})
                elif section_of(key) is not None:
                    getattr(self, section_of(key)).replace(**{key: value})
            except (ValueError, TraitError) as exc:
                log.warning("ignoring %s.%s from the IPython config: %s", type(self).__name__, key, exc)
                del section[key]

    @validate(*_CONFIG_TRAITS)
    def _validate_config_trait(self, proposal: Any) -> Any:
        """A trait change goes through the config class's validation and updates the session config."""
        name = proposal["trait"].name
        section = section_of(name)
        current = getattr(self, section)
        if getattr(current, name) == proposal["value"]:
            return proposal["value"]
        try:
            updated = current.replace(**{name: proposal["value"]})
        except ValueError as exc:
            raise TraitError(str(exc)) from None
        setattr(self, section, updated)
        return getattr(updated, name)

    @validate("target")
    def _validate_target(self, proposal: Any) -> str:
        from ..targets import TARGETS

        if proposal["value"] not in TARGETS:
            raise TraitError(f"unknown target {proposal['value']!r}; use one of: {', '.join(TARGETS)}")
        return proposal["value"]

    def apply_settings(self, changes: dict[str, str]) -> list[str]:
        """Set known settings from text (``%fl_config``): all are validated first, so a bad one changes nothing.

        Returns the config classes' warnings (e.g. a deprecated setting), one line each.
        """
        updated = {section: getattr(self, section) for section in CONFIG_CLASSES}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for key, value in changes.items():
                if key != "target":
                    section = section_of(key)
                    updated[section] = updated[section].replace(**{key: value})
        if "target" in changes:
            self._validate_target({"value": changes["target"]})
        for section, cfg in updated.items():
            setattr(self, section, cfg)
            for key in changes:
                if section_of(key) == section:
                    setattr(self, key, getattr(cfg, key))
        if "target" in changes:
            self.target = changes["target"]
        return list(dict.fromkeys(str(w.message) for w in caught))

    # -- display (%fl_config) -------------------------------------------------------------------
    def _shown(self, key: str) -> str:
        if key == "target":
            return repr(self.target)
        return repr(getattr(getattr(self, section_of(key)), key))

    def _settings_text(self) -> str:
        lines = [f"target = {self.target!r}"]
        for section in CONFIG_CLASSES:
            cfg = getattr(self, section)
            lines.append(f"[{type(cfg).__name__}]")
            for name in cfg.field_names():
                if name in SECRET_FIELDS:
                    lines.append(f"  {name} = {'set' if getattr(cfg, name) else 'not set'} (use %fl_login)")
                else:
                    lines.append(f"  {name} = {getattr(cfg, name)!r}")
        return "\n".join(lines)
