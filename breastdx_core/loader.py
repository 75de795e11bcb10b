"""One loader for every settings dataclass: its defaults, then ``BREASTDX_<FIELD>``
environment variables, then overrides (CLI flags; None means "not given").

Called by `breastdx_core.configs.load` (PipelineConfig: it owns the prefix, so an unknown
``BREASTDX_*`` variable is an error) and `breastdx_core.cluster_configs.load`
(ClusterConfig: reads only its own fields). TF-free; imports nothing of the project.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

ENV_PREFIX = "BREASTDX_"


def env_name(field_name: str) -> str:
    """The variable that sets a field: ``BREASTDX_<FIELD>``."""
    return ENV_PREFIX + field_name.upper()


def coerce(field: dataclasses.Field, raw: str) -> Any:
    """An environment string as the field's type, judged by its default: true/false for a
    bool, a number for an int or a float, comma-separated scalars for a tuple of scalars
    (``BREASTDX_TUNER_DROPOUTS=0.1,0.3``), else the string itself.

    Raises:
        ValueError: saying what the value must be (`load` adds the variable and the value).
    """
    default = field.default
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            raise ValueError("must be a number") from None
    if isinstance(default, tuple) and default and not isinstance(default[0], tuple):
        kind = type(default[0])
        try:
            return tuple(kind(item.strip()) for item in raw.split(",") if item.strip())
        except ValueError:
            raise ValueError(f"must be comma-separated {kind.__name__} values") from None
    return raw


def load(
    cls: type[Any],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    *,
    strict: bool = False,
    skip: Collection[str] = (),
    skip_prefixes: tuple[str, ...] = (),
    convert: Callable[[dataclasses.Field, str], Any] = coerce,
    error: type[Exception] = ValueError,
    what: str = "setting",
) -> dict[str, Any]:
    """The keyword arguments for ``cls(**values)``: ``BREASTDX_<FIELD>`` variables, then
    ``overrides``; the fields neither sets keep their defaults.

    Args:
        strict: every ``BREASTDX_*`` variable (less ``skip`` and ``skip_prefixes``) must name
            a field of ``cls``, and an empty one counts; otherwise only ``cls``'s own
            variables are read, and an empty one means "not set".
        convert: string -> value (``coerce``, or a wrapper that reads some fields its own way).
        error: raised for a bad or unknown variable or override, naming it.
        what: how the messages call a setting ("setting", "cluster setting").
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if strict:
        found = {}
        for key, raw in env.items():
            if (
                not key.startswith(ENV_PREFIX)
                or key in skip
                or key.startswith(tuple(skip_prefixes))
            ):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields:
                raise error(
                    f"unknown {what} {key}; known: {', '.join(env_name(n) for n in fields)}"
                )
            found[name] = raw
    else:
        found = {name: env[env_name(name)] for name in fields if env.get(env_name(name))}
    values: dict[str, Any] = {}
    for name, raw in found.items():
        try:
            values[name] = convert(fields[name], raw)
        except ValueError as exc:
            raise error(f"{env_name(name)} {exc}, got {raw!r}") from None
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in fields:
            raise error(f"unknown {what} {name!r}")
        values[name] = value
    return values
