"""The Unicode data ``hitl_kit.identity`` compares names with, and the command that makes it.

``identity_data.json`` (package data) is derived from ICU, Unicode's reference implementation of
TR39, and stamped with the ICU and Unicode versions it came from:

* ``prototypes``: for each TR39 prototype (as ICU's ``SpoofChecker`` gives a character's
  skeleton: in NFD), every character drawn like it. Characters that decompose (``é``) are left
  out: a skeleton decomposes them first.
* ``scripts``: each code point's Script_Extensions as runs (first code point, short script codes;
  empty for Common and Inherited, ``?`` for a code point unassigned in that Unicode version), and
  ``script_names`` for messages.

Nothing in it is kept by hand. Regenerate it when Unicode or ICU updates, on a developer's machine
(PyICU compiles against the system's ICU: Debian's ``libicu-dev`` and ``pkg-config``; never a
requirement of the kit):

    .venv/bin/python -m pip install pyicu && .venv/bin/python -m hitl_kit.identity_data

then run ``tests/test_identity.py``: with PyICU present it checks every code point's skeleton
against ICU's.
"""

from __future__ import annotations

import bisect
import functools
import json
import sys
from pathlib import Path
from typing import NamedTuple

FILE = "identity_data.json"  # beside this module (package data)
COMMAND = "python -m hitl_kit.identity_data"
UNASSIGNED = "?"


class Table(NamedTuple):
    """The data, ready to use: ``skeletons`` for ``str.translate``, scripts by bisection."""

    icu: str
    unicode: str
    skeletons: dict[int, str]
    run_starts: list[int]
    run_scripts: list[frozenset[str] | None]  # None: unassigned in ``unicode``
    script_names: dict[str, str]

    def scripts(self, char: str) -> frozenset[str] | None:
        """The scripts ``char`` is written in (empty for digits, marks, spaces), or None when it is
        unassigned in the data's Unicode version."""
        return self.run_scripts[bisect.bisect_right(self.run_starts, ord(char)) - 1]


@functools.cache
def table() -> Table:
    """The shipped data, read once."""
    try:
        data = json.loads(Path(__file__).with_name(FILE).read_text("ascii"))
        skeletons = {ord(char): prototype for prototype, chars in data["prototypes"].items()
                     for char in chars}
        starts, scripts = zip(*data["scripts"], strict=True)
        sets = {value: None if value == UNASSIGNED else frozenset(value.split())
                for value in set(scripts)}
        return Table(data["icu"], data["unicode"], skeletons, list(starts),
                     [sets[value] for value in scripts], data["script_names"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"hitl_kit's Unicode data ({FILE}) is missing or damaged ({exc}); "
                           f"reinstall hitl_kit, or regenerate it: {COMMAND}") from exc


def from_icu() -> dict:
    """The data, derived from the ICU that PyICU is built against (a developer's install)."""
    import icu

    checker, nfd = icu.SpoofChecker(), icu.Normalizer2.getNFDInstance()
    unassigned = icu.UnicodeSet("[:Cn:]")
    no_script = {icu.UScriptCode.COMMON, icu.UScriptCode.INHERITED}
    prototypes: dict[str, str] = {}
    runs: list[list] = []
    names: dict[str, str] = {}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if not 0xD800 <= code <= 0xDFFF and nfd.normalize(char) == char:
            skeleton = checker.getSkeleton(0, char)
            if skeleton != char:
                prototypes[skeleton] = prototypes.get(skeleton, "") + char
        if unassigned.contains(char):
            scripts = UNASSIGNED
        else:
            found = [icu.Script(c) for c in icu.Script.getScriptExtensions(code)
                     if c not in no_script]
            names.update((script.getShortName(), script.getName()) for script in found)
            scripts = " ".join(sorted(script.getShortName() for script in found))
        if not runs or runs[-1][1] != scripts:
            runs.append([code, scripts])
    return {"made_by": f"{COMMAND}, from ICU's SpoofChecker and script data; do not edit",
            "icu": icu.ICU_VERSION, "unicode": icu.UNICODE_VERSION,
            "prototypes": dict(sorted(prototypes.items())), "scripts": runs,
            "script_names": dict(sorted(names.items()))}


def write(data: dict, path: Path) -> None:
    """One entry a line, so a regeneration's diff shows what Unicode changed."""
    lines = [f"{json.dumps(key)}: {json.dumps(data[key])}," for key in
             ("made_by", "icu", "unicode", "script_names")]
    lines += ['"prototypes": {', ",\n".join(f"  {json.dumps(prototype)}: {json.dumps(chars)}"
                                           for prototype, chars in data["prototypes"].items()),
              "},", '"scripts": [', ",\n".join(f"  {json.dumps(run)}" for run in data["scripts"]),
              "]"]
    path.write_text("{\n" + "\n".join(lines) + "\n}\n", encoding="ascii")


def main() -> None:
    path = Path(__file__).with_name(FILE)
    data = from_icu()
    write(data, path)
    print(f"wrote {path.name}: ICU {data['icu']}, Unicode {data['unicode']}, "
          f"{sum(map(len, data['prototypes'].values()))} confusable characters, "
          f"{len(data['scripts'])} script runs")


if __name__ == "__main__":
    main()
