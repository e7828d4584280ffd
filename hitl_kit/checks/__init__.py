"""The drills' checks, one module per drill. ``get_drill("drill1")`` or ``from hitl_kit.checks
import drill1``."""

from __future__ import annotations

import importlib

from hitl_kit.selfcheck import Drill

DRILL_MODULES = {
    "drill1": "hitl_kit.checks.d01_classify",
    "drill2": "hitl_kit.checks.d02_gate",
    "drill3": "hitl_kit.checks.d03_audit",
    "drill4": "hitl_kit.checks.d04_timeout",
}


def get_drill(key: str) -> Drill:
    if key not in DRILL_MODULES:
        raise KeyError(f"no drill {key!r}; drills are: {', '.join(DRILL_MODULES)}")
    return importlib.import_module(DRILL_MODULES[key]).DRILL


def all_drills() -> list[Drill]:
    return [get_drill(key) for key in DRILL_MODULES]


def __getattr__(name: str) -> Drill:  # lets a notebook write ``from hitl_kit.checks import drill1``
    if name in DRILL_MODULES:
        return get_drill(name)
    raise AttributeError(name)
