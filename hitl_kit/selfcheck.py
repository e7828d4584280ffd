"""Self-checks for the drills, in the style of Kaggle's learntools: check, hint, solution.

A drill is a list of ``Check``s. Each check looks at the learner's names (a notebook's globals)
and either passes, raises ``NotAttempted`` (the stub is still untouched) or raises
``AssertionError`` with a message that says what is wrong. The same checks run in three places:

* in the drill notebook's last cell: ``drill.check()`` (reads the notebook's globals);
* from the shell: ``python -m hitl_kit check drills/01_classify_actions.ipynb``, which runs the
  notebook's code cells in a fresh namespace first;
* in pytest, against ``solutions/`` (must pass) and the pristine ``drills/`` (must not).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELFCHECK_TAG = "selfcheck"  # cell tag of the drill's own check cell, skipped when run from a shell
SOLUTION_TAG = "solution"  # cell tag of the cells ``Drill.solution()`` shows

PASS, FAIL, NOT_ATTEMPTED = "pass", "fail", "not attempted"
CORRECT, INCORRECT = "correct", "incorrect"


class NotAttempted(Exception):
    """Raised by a check when the part it looks at is still the untouched stub."""


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[dict], None]
    hint: str


@dataclass(frozen=True)
class Result:
    check: Check
    status: str
    message: str = ""


@dataclass
class Report:
    drill: Drill
    results: list[Result]
    cell_errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        if self.cell_errors:
            return INCORRECT
        if statuses == {PASS}:
            return CORRECT
        if statuses == {NOT_ATTEMPTED}:
            return NOT_ATTEMPTED
        return INCORRECT

    @property
    def passed(self) -> int:
        return sum(r.status == PASS for r in self.results)

    def __str__(self) -> str:
        mark = {PASS: "[x]", FAIL: "[ ]", NOT_ATTEMPTED: "[-]"}
        lines = [f"{self.drill.title}: {self.status.upper()} "
                 f"({self.passed}/{len(self.results)} checks pass)"]
        lines += [f"  ! {error}" for error in self.cell_errors]
        for r in self.results:
            lines.append(f"  {mark[r.status]} {r.check.name}")
            if r.status == FAIL:
                lines += [f"        {line}" for line in r.message.splitlines()]
                lines.append(f"        hint: {r.check.hint}")
        if self.status == NOT_ATTEMPTED:
            lines.append("  Fill in the TODOs above, run the cells, then run this check again.")
        elif self.status == INCORRECT:
            lines.append(f"  Stuck? {self.drill.key}.hint() or "
                         f"`python -m hitl_kit solution {self.drill.key}`.")
        return "\n".join(lines)

    def hints(self) -> str:
        """The hint of each check that does not pass yet (all hints once everything passes)."""
        pending = [r for r in self.results if r.status != PASS] or self.results
        return "\n".join(f"- {r.check.name}: {r.check.hint}" for r in pending)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the text, not a dataclass
        printer.text(str(self))


@dataclass
class Drill:
    key: str
    title: str
    notebook: str  # relative to the repository root
    checks: list[Check]

    @property
    def drill_path(self) -> Path:
        return ROOT / "drills" / self.notebook

    @property
    def solution_path(self) -> Path:
        return ROOT / "solutions" / self.notebook

    def check(self, namespace: dict | None = None) -> Report:
        """Run every check against ``namespace`` (default: the caller's globals)."""
        if namespace is None:
            namespace = inspect.currentframe().f_back.f_globals
        report = self.run(namespace)
        _record(report, Path.cwd())  # a kernel's working directory is its notebook's folder
        return report

    def run(self, namespace: dict, cell_errors: list[str] | None = None) -> Report:
        results = []
        for chk in self.checks:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    chk.run(namespace)
            except NotAttempted as exc:
                results.append(Result(chk, NOT_ATTEMPTED, str(exc)))
            except AssertionError as exc:
                results.append(Result(chk, FAIL, str(exc) or "the check's assertion failed"))
            except NotImplementedError:
                results.append(Result(chk, NOT_ATTEMPTED, "a stub raises NotImplementedError"))
            except Exception as exc:  # the learner's code crashed: show where, do not hide it
                results.append(Result(chk, FAIL, _short_traceback(exc)))
            else:
                results.append(Result(chk, PASS))
        return Report(self, results, cell_errors or [])

    def hint(self, namespace: dict | None = None) -> None:
        """Print the hint of each check that does not pass yet."""
        if namespace is None:
            namespace = inspect.currentframe().f_back.f_globals
        print(self.run(namespace).hints())

    def solution(self) -> None:
        """Print the solved cells of this drill."""
        print(solution_source(self.solution_path))


def _short_traceback(exc: BaseException) -> str:
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-2)
    return "your code raised an error:\n" + "".join(frames).rstrip()


def _read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no notebook at {path}: give a drill notebook's path") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a readable notebook (bad JSON: {exc})") from None


def _code_cells(path: Path) -> list[dict]:
    cells = _read_notebook(path).get("cells", [])
    return [c for c in cells if c.get("cell_type") == "code"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def drill_key_of(path: Path) -> str:
    """The drill a notebook belongs to, from its metadata ``hitl_kit.drill``."""
    key = _read_notebook(path).get("metadata", {}).get("hitl_kit", {}).get("drill")
    if not key:
        raise ValueError(f"{path} is not a drill notebook (its metadata names no hitl_kit drill)")
    return key


def solution_source(path: Path) -> str:
    cells = [c for c in _code_cells(path) if SOLUTION_TAG in _tags(c)]
    return "\n\n".join(_source(c).strip() for c in cells)


def run_notebook_cells(path: Path) -> tuple[dict, list[str]]:
    """Run a notebook's code cells (not its self-check cell) in a fresh namespace.

    Shell escapes and magics (lines starting with ``!`` or ``%``) are skipped. A cell that raises
    is reported and the next cells still run, so one mistake doesn't hide every other result.
    """
    namespace: dict = {"__name__": "__drill__"}
    errors: list[str] = []
    for number, cell in enumerate(_code_cells(path), start=1):
        if SELFCHECK_TAG in _tags(cell):
            continue
        lines = [ln for ln in _source(cell).splitlines() if not ln.lstrip().startswith(("!", "%"))]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile("\n".join(lines), f"{path.name} cell {number}", "exec"), namespace)
        except NotImplementedError:
            continue  # a stub that is called at top level: the checks will say "not attempted"
        except Exception as exc:
            errors.append(f"code cell {number} raised {type(exc).__name__}: {exc}")
    return namespace, errors


def check_notebook(path: str | Path) -> Report:
    """Run a drill notebook's cells, then its checks."""
    from hitl_kit.checks import get_drill

    path = Path(path)
    drill = get_drill(drill_key_of(path))
    namespace, errors = run_notebook_cells(path)
    report = drill.run(namespace, errors)
    _record(report, path.parent)
    return report


def _record(report: Report, where: Path) -> None:
    """Save the result in the learner's progress file (not for notebooks in solutions/)."""
    from hitl_kit.progress import Progress, records_progress

    if records_progress(where):
        try:
            Progress().record(report)
        except OSError as exc:  # progress is a convenience: never let it break a check
            print(f"(progress not saved: {exc})")
