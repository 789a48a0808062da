"""Library hints in command-line words: ``Set resume=True`` → ``Set --resume``.

The library speaks its parameters (a Python user has no flags): ``resume=True``,
``require_pass=False``, ``(num_images)``. The CLI knows, for the running command, which flag fills
each library parameter (its own parameters, its groups' fields, and the command's ``flags``
table); that one mapping renders every hint and every ``param`` of an error. Names the command
does not know are left as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ASSIGN = re.compile(r"\b([a-z][a-z0-9_]*)=(True|False|'[^']*'|\"[^\"]*\"|[\w.:\-]+)")
_MENTION = re.compile(r"\(([a-z][a-z0-9]*_[a-z0-9_]+)\)")  # (num_images); not a plain (word)


@dataclass(frozen=True)
class Spelling:
    """How one library parameter is typed on this command's line."""

    flag: str  # --resume
    switch: bool = False  # an on/off flag
    off: str | None = None  # its "off" spelling (--no-copies), if any
    inverted: bool = False  # the flag sets the library parameter to False (--allow-failing)

    def with_value(self, value: str) -> str:
        if not self.switch:
            return f"{self.flag} {value.strip(chr(39) + chr(34))}"
        wanted = (value == "True") != self.inverted
        if wanted:
            return self.flag
        return self.off or f"leave out {self.flag}"


def spellings(
    command: Any, groups: dict[str, tuple[str, bool]], extra: dict[str, str]
) -> dict[str, Spelling]:
    """Library parameter → :class:`Spelling` for ``command``.

    ``groups``: library parameter → (command-line parameter, inverted); ``extra``: library
    parameter → flag where the names differ (``batch_size`` → ``--batch``).
    """
    by_dest: dict[str, Spelling] = {}
    for p in command.params:
        if getattr(p, "param_type_name", "") != "option" or p.hidden or not p.name:
            continue
        longs = [o for o in p.opts if o.startswith("--")] or list(p.opts)
        off = next(iter(p.secondary_opts), None)
        by_dest[p.name] = Spelling(longs[0], bool(p.is_flag), off)
    out = dict(by_dest)
    for lib, (dest, inverted) in groups.items():
        if dest in by_dest:
            s = by_dest[dest]
            out[lib] = Spelling(s.flag, s.switch, s.off, inverted)
    for lib, flag in extra.items():
        match = next((s for s in by_dest.values() if s.flag == flag), None)
        out[lib] = match or Spelling(flag)
    return out


def render(text: str, names: dict[str, Spelling]) -> str:
    """``text`` with every known ``param=value`` and ``(param)`` in flags."""

    def assign(m: re.Match[str]) -> str:
        s = names.get(m.group(1))
        return s.with_value(m.group(2)) if s else m.group(0)

    def mention(m: re.Match[str]) -> str:
        s = names.get(m.group(1))
        return f"({s.flag})" if s else m.group(0)

    return _MENTION.sub(mention, _ASSIGN.sub(assign, text))
