"""Option groups: several flags declared once, parsed by typer, handed to a command as one config.

Polygraphy's ``tools/args`` idea on typer. A :class:`Group` lists its :class:`Field` s (a command
line parameter, its ``cli_args`` declaration, the library config field it fills); :func:`groups`
rewrites a command's signature so typer sees every field as a flag under the group's help panel,
and calls the command with one :class:`GroupValues` per group (the library's config object, built
with the library's defaults, plus which flags the user typed). The same group in two commands
gives the same flags, which is the point: ``calibrate`` and ``build-engine`` cannot drift apart.

Renamed flags keep their old spelling as a hidden alias (``aliases``) for one release.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import typer
from typer.models import OptionInfo

from deploy_ran.errors import DeployRanError

_UNSET = object()
_CONTEXT_PARAM = "_typer_context"
#: The running command's context (typer hands it to :func:`groups`' wrapper), for
#: :func:`typed` and for rendering hints in this command's flags.
current_context: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "current_context", default=None
)


def _option_of(decl: Any) -> tuple[Any, OptionInfo]:
    """``Annotated[kind, typer.Option(...)]`` → (kind, a copy of its OptionInfo)."""
    kind, *meta = typing.get_args(decl)
    infos = [m for m in meta if isinstance(m, OptionInfo)]
    if len(infos) != 1:
        raise TypeError(f"{decl!r} is not an Annotated typer option")
    return kind, copy.copy(infos[0])


@dataclass(frozen=True)
class Field:
    """One flag of a group.

    ``name`` is the command-line parameter (``calib_data`` → ``--calib-data`` unless ``decl``
    names its flag); ``config`` the library field it fills (default: ``name``; ``None``: a flag
    the group reads itself); ``invert`` for a switch that turns a library default off
    (``--no-cache`` → ``use_cache=False``); ``default`` overrides the config class's default.
    """

    name: str
    decl: Any
    config: str | None | object = _UNSET
    invert: bool = False
    default: Any = _UNSET

    @property
    def config_name(self) -> str | None:
        return self.name if self.config is _UNSET else self.config  # type: ignore[return-value]

    def flag(self) -> str:
        """The flag as typed (its first long spelling)."""
        _, info = _option_of(self.decl)
        longs = [d for d in (info.param_decls or ()) if d.startswith("--")]
        if longs:
            return longs[0].split("/")[0]
        return "--" + self.name.replace("_", "-")


@dataclass
class GroupValues:
    """What one group parsed: the library ``config`` and the flags the user typed."""

    config: Any
    given: dict[str, str] = field(default_factory=dict)  # field name → the flag as typed

    def refuse_unless(self, applies: bool, condition: str, fields: Iterable[str] | None = None):
        """Refuse (exit 2) the typed flags of ``fields`` (default: all) where they do not apply."""
        typed = [f for n, f in self.given.items() if fields is None or n in set(fields)]
        if applies or not typed:
            return
        verb = "applies" if len(typed) == 1 else "apply"
        raise DeployRanError(
            f"{', '.join(typed)} {verb} to {condition} only.",
            hint=f"Add {condition}, or leave out {', '.join(typed)}.",
        )


class Group:
    """A named set of :class:`Field` s that builds one library config (``make``).

    ``defaults_from`` is the library's config class: a field's default is the class's default,
    written once in the library. ``check(values)`` refuses combinations that do not apply.
    """

    def __init__(
        self,
        panel: str,
        make: Callable[..., Any],
        *fields: Field,
        defaults_from: type | None = None,
        check: Callable[[GroupValues, dict[str, Any]], None] | None = None,
    ) -> None:
        self.panel, self.make, self.fields, self.check = panel, make, fields, check
        self.defaults = _library_defaults(defaults_from) if defaults_from else {}

    def default(self, fld: Field) -> Any:
        """The flag's default: the library's (a list flag: unset, so the library's applies)."""
        if fld.default is not _UNSET:
            return fld.default
        if fld.invert:
            return False
        kind, _ = _option_of(fld.decl)
        if "list" in str(kind):
            return None
        return self.defaults.get(fld.config_name or "")

    def parameters(self, aliases: dict[str, str]) -> list[inspect.Parameter]:
        """Every field as a keyword parameter typer turns into a flag, plus hidden aliases."""
        params = []
        for fld in self.fields:
            kind, info = _option_of(fld.decl)
            info.rich_help_panel = self.panel
            params.append(_keyword(fld.name, Annotated[kind, info], self.default(fld)))
            if fld.name in aliases:
                alias = copy.copy(info)
                alias.param_decls, alias.hidden = (aliases[fld.name],), True
                params.append(
                    _keyword(_alias_param(fld.name), Annotated[Optional[kind], alias], None)
                )
        return params

    def build(self, values: dict[str, Any], aliases: dict[str, str]) -> GroupValues:
        """Pop this group's values from ``values`` and make the library config."""
        ctx = current_context.get()
        given: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        for fld in self.fields:
            value = values.pop(fld.name)
            if fld.name in aliases:
                old = values.pop(_alias_param(fld.name))
                if old is not None:
                    if _typed(ctx, fld.name):
                        raise DeployRanError(
                            f"{aliases[fld.name]} is the old name of {fld.flag()}; give one.",
                            hint=f"Use {fld.flag()}.",
                        )
                    value, given[fld.name] = old, aliases[fld.name]
            if _typed(ctx, fld.name):
                given[fld.name] = fld.flag()
            if fld.config_name is None:
                continue
            if fld.invert:
                value = not value
            elif value is None:
                continue  # unset: the library's default applies
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[fld.config_name] = value
        result = GroupValues(None, given)
        if self.check:
            self.check(result, kwargs)
        result.config = self.make(**kwargs)
        return result

    def params(self) -> dict[str, tuple[str, bool]]:
        """Library parameter → (command-line parameter, inverted), to render library hints
        (``num_images`` → ``--calib-images``, ``require_pass=False`` → ``--allow-failing``)."""
        return {f.config_name: (f.name, f.invert) for f in self.fields if f.config_name}


def _library_defaults(cls: type) -> dict[str, Any]:
    """A config dataclass's defaults, by field name (the one place they are written)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _alias_param(name: str) -> str:
    return f"{name}__old_name"


def _typed(ctx: Any, name: str) -> bool:
    """Whether the user typed the flag (not its default). Typer may vendor click, so the
    source is compared by name."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")


def groups(
    renamed: dict[str, str] | None = None, **uses: Group | tuple[Group, dict[str, str]]
) -> Callable[[Callable], Callable]:
    """Give a command the flags of each group; it receives one :class:`GroupValues` per group.

    ``@groups(calib=CALIBRATION)`` or, with hidden old spellings,
    ``@groups(calib=(CALIBRATION, {"calib_data": "--data"}))``. ``renamed`` gives the command's
    own parameters a hidden old spelling: ``renamed={"batch": "--batch-sizes"}``.
    """
    table = {k: (v, {}) if isinstance(v, Group) else v for k, v in uses.items()}
    renamed = renamed or {}

    def decorate(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        own = [
            p.replace(
                annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY
            )
            for p in sig.parameters.values()
            if p.name not in table
        ]  # typer calls a command with keywords only
        params = own + [p for g, aliases in table.values() for p in g.parameters(aliases)]
        for p in own:
            if p.name in renamed:
                kind, info = _option_of(p.annotation)
                info.param_decls, info.hidden = (renamed[p.name],), True
                params.append(_keyword(_alias_param(p.name), Annotated[Optional[kind], info], None))

        params.append(_keyword(_CONTEXT_PARAM, typer.Context, None))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            current_context.set(kwargs.pop(_CONTEXT_PARAM))
            for name, old in renamed.items():
                value = kwargs.pop(_alias_param(name))
                if value is not None:
                    new = next(p for p in own if p.name == name)
                    flag = Field(name, new.annotation).flag()
                    if _typed(current_context.get(), name):
                        raise DeployRanError(
                            f"{old} is the old name of {flag}; give one.", hint=f"Use {flag}."
                        )
                    kwargs[name] = value
            for key, (group, aliases) in table.items():
                kwargs[key] = group.build(kwargs, aliases)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.group_params = {  # type: ignore[attr-defined]
            lib: dest for g, _ in table.values() for lib, dest in g.params().items()
        }
        return wrapper

    return decorate


def params_of(fn: Callable) -> dict[str, tuple[str, bool]]:
    """Library parameter → (command-line parameter, inverted) for a command's groups."""
    return dict(getattr(fn, "group_params", {}))
