"""Self-checks for the drills, in the style of Kaggle's learntools: check, hint, solution.

A drill is a list of ``Check``s. Each check probes the learner's names (a notebook's globals) and
either passes, raises ``NotAttempted`` (what it needs is not defined yet, or still the stub that
raises ``NotImplementedError``) or raises ``Flaw``: the flaw in one line, the evidence (the input
tried, what happened, what was expected) and the hint for that flaw. The same checks run in three
places:

* in the drill notebook's check cell: ``drill.check()`` (reads the notebook's globals);
* from the shell: ``.venv/bin/python -m hitl_kit check drills/NAME.ipynb`` runs the *saved*
  notebook's code cells in a fresh namespace first (see ``hitl_kit.course.checks``);
* in pytest, against ``solutions/`` (must pass), the pristine ``drills/`` (must read "not
  attempted") and the mutants in ``tests/mutants/`` (each must fail the check that names it).

A check never hangs and never changes the learner's objects: each one runs in a forked child
process with a deadline. Why a fork and not a thread: a thread stuck in a learner's ``while True``
or deadlock cannot be stopped from Python, so it would burn a core in the kernel until a restart;
a child process is killed, and whatever the probes did to the learner's objects (class-level
state, module caches, tables) dies with it. Where ``os.fork`` does not exist (Windows) the checks
run in a watchdog thread instead (also with ``HITL_KIT_SELFCHECK_FORK=0``), which reports the
hang and leaves the stuck thread behind.

>>> def x_is_2(ns):
...     if need(ns, "x") != 2:
...         raise Flaw("x is not 2", got=repr(ns["x"]), expected="2")
>>> drill = Drill("demo", "Demo", "demo.ipynb", [Check("x is 2", x_is_2, "Set x = 2.")])
>>> [drill.run(ns).status for ns in ({}, {"x": 1}, {"x": 2})]
['not attempted', 'incorrect', 'correct']
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import difflib
import dis
import faulthandler
import gc
import inspect
import io
import json
import linecache
import os
import re
import select
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SELFCHECK_TAG = "selfcheck"  # cell tag of the drill's own check cell, skipped when run from a shell
SOLUTION_TAG = "solution"  # cell tag of the cells ``Drill.solution()`` shows

PASS, FAIL, NOT_ATTEMPTED = "pass", "fail", "not attempted"
CORRECT, INCORRECT = "correct", "incorrect"

# A verdict, hang or deadlock included, comes within VERDICT_S of asking for it (once the drill's
# libraries are imported, which ``Drill.warm_up`` does first, once per process). The checks run
# side by side (each in a child process), so the deadline that counts is one check's, not a sum:
# a child stops itself at its deadline (and names where it hung); one still silent KILL_GRACE_S
# later is killed. From the shell the notebook's cells run first, within CELLS_BUDGET_S together,
# and the checks get what is left of VERDICT_S (never less than MIN_CHECK_S). Inside a check,
# every wait is sized from ``time_left()``, so a slow answer is judged before the deadline.
# 8 s: with the interpreter's start, the imports and the warm-up (about 1.5 s on a loaded
# machine) a shell check of a hanging answer ends within 10 s.
VERDICT_S = 8.0
CHECK_TIMEOUT_S = 6.5  # one check's deadline; a learner's hang ends here with a message
KILL_GRACE_S = 0.5
MIN_CHECK_S = 4.0
CELL_TIMEOUT_S = 2.5  # one notebook cell's deadline when the shell runs the notebook
CELLS_BUDGET_S = 2.5  # all the cells together; a cell started after that gets LATE_CELL_S
LATE_CELL_S = 0.3
# How checks are isolated: a child process, or a watchdog thread where fork is missing or
# HITL_KIT_SELFCHECK_FORK=0 asks for threads (an escape hatch for a platform where forking a
# kernel misbehaves).
FORK = hasattr(os, "fork") and os.environ.get("HITL_KIT_SELFCHECK_FORK", "1") != "0"


class CheckError(ValueError):
    """What was given to the checker is not something it can check (no such file, a directory,
    not a drill notebook, no such drill). The message says what was wrong and what to give."""

    def __str__(self) -> str:  # never KeyError's extra quotes, whatever a subclass mixes in
        return str(self.args[0]) if self.args else ""


class NotAttempted(Exception):
    """Raised by a check when the part it looks at is not defined yet or is still the stub."""


class Flaw(AssertionError):
    """A check's finding: the flaw in one line a learner understands, the evidence, a hint.

    >>> print(Flaw("policy_for guesses", tried="policy_for('x')", got="'auto_execute'",
    ...            expected="'hard_gate'").message())
    policy_for guesses
      tried:    policy_for('x')
      got:      'auto_execute'
      expected: 'hard_gate'
    """

    LABELS = ("tried", "got", "expected", "also")

    def __init__(self, flaw: str, *, tried: str | None = None, got: str | None = None,
                 expected: str | None = None, also: str | None = None, hint: str | None = None):
        super().__init__(flaw)
        self.flaw, self.hint = flaw, hint
        self.evidence = [(label, str(text)) for label, text in
                         zip(self.LABELS, (tried, got, expected, also), strict=True)
                         if text is not None]

    def message(self) -> str:
        lines = [self.flaw]
        for label, text in self.evidence:
            first, *rest = text.splitlines() or [""]
            lines.append(f"  {label + ':':9} {first}")
            lines += [f"  {'':9} {line}" for line in rest]
        return "\n".join(lines)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[dict], None]
    hint: str  # the check's general hint; a Flaw carries the hint for its own flaw


@dataclass(frozen=True)
class Result:
    check: Check
    status: str
    message: str = ""  # the flaw's line, then its evidence
    hint: str = ""  # the hint for this flaw ("" -> the check's general hint)


@dataclass
class Report:
    drill: Drill
    results: list[Result]
    cell_errors: list[str] = field(default_factory=list)
    source: Path | None = None  # the saved notebook that was checked (None: a live namespace)
    saved_at: float | None = None  # its modification time when it was read

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

    def saved_line(self) -> str:
        """When the checked file was saved: the shell reads the file, not the open notebook."""
        if self.source is None or self.saved_at is None:
            return ""
        ago = _ago(time.time() - self.saved_at)
        return (f"  checked {shown_path(self.source)} as saved "
                f"{datetime.fromtimestamp(self.saved_at):%Y-%m-%d %H:%M:%S} ({ago}): "
                "save, then check")

    def __str__(self) -> str:
        mark = {PASS: "[x]", FAIL: "[ ]", NOT_ATTEMPTED: "[-]"}
        lines = [f"{self.drill.title}: {self.status.upper()} "
                 f"({self.passed}/{len(self.results)} checks pass)"]
        if self.saved_line():
            lines.append(self.saved_line())
        lines += [f"  ! {error}" for error in self.cell_errors]
        shown: set[str] = set()
        for r in self.results:
            lines.append(f"  {mark[r.status]} {r.check.name}")
            if r.status == FAIL and r.message in shown:  # one flaw that fails several checks
                lines.append(f"        {r.message.splitlines()[0]} (as above)")
            elif r.status == FAIL:
                shown.add(r.message)
                lines += [f"        {line}" for line in r.message.splitlines()]
                lines.append(f"        hint: {r.hint or r.check.hint}")
        if self.status == NOT_ATTEMPTED:
            lines.append("  Fill in the TODOs above, run the cells, then run this check again.")
        elif self.status == INCORRECT:
            lines.append(f"  Stuck? {self.drill.key}.hint() or "
                         f"`.venv/bin/python -m hitl_kit solution {self.drill.key}`.")
        return "\n".join(lines)

    def hints(self) -> str:
        """The hint of each check that does not pass yet; on a solved drill, says so instead."""
        if self.status == CORRECT:
            return (f"{self.drill.title}: CORRECT, all {len(self.results)} checks pass. "
                    "No hints needed.")
        pending = [r for r in self.results if r.status != PASS]
        return "\n".join(f"- {r.check.name}: {r.hint or r.check.hint}" for r in pending)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the text, not a dataclass
        printer.text(str(self))


Recorder = Callable[[Report, Path], None]


@dataclass
class Drill:
    key: str
    title: str
    notebook: str  # file name, in drills/ and in solutions/
    checks: list[Check]
    recorder: Recorder | None = None  # called with each report (course.checks sets it)
    # Warms the libraries the checks use, once per process, before the checks fork: each child
    # then starts warm instead of paying the first-call costs again. It never runs learner code.
    prepare: Callable[[], None] | None = None
    _prepared: bool = field(default=False, repr=False)

    @property
    def drill_path(self) -> Path:
        return ROOT / "drills" / self.notebook

    @property
    def solution_path(self) -> Path:
        return ROOT / "solutions" / self.notebook

    @property
    def learner_path(self) -> Path:
        """The learner's copy of the drill (``my-work/drills/``, made by the launcher), or the
        kit's own before there is one."""
        from hitl_kit.lab import learner_copy

        return learner_copy(self.drill_path)

    def check(self, namespace: dict | None = None, timeout: float = CHECK_TIMEOUT_S) -> Report:
        """Run every check against ``namespace`` (default: the caller's globals)."""
        if namespace is None:
            namespace = inspect.currentframe().f_back.f_globals
        report = self.run(namespace, timeout=timeout)
        self._record(report, Path.cwd())  # a kernel's working directory is its notebook's folder
        return report

    def check_notebook(self, path: str | Path) -> Report:
        """Run a saved notebook's code cells in a fresh namespace, then every check."""
        path = Path(path)
        self.warm_up()  # the libraries imported first: a cell's deadline is for the learner's code
        started = time.monotonic()
        with _threads_quiet():  # a timer the cells started may fail later: no traceback for it
            namespace, errors = run_notebook_cells(path)  # CheckError if it is not a notebook
            saved_at = path.stat().st_mtime
            left = VERDICT_S - KILL_GRACE_S - (time.monotonic() - started)
            report = self.run(namespace, errors,
                              timeout=max(MIN_CHECK_S, min(CHECK_TIMEOUT_S, left)))
        report.source, report.saved_at = path, saved_at
        self._record(report, path.parent)
        return report

    def run(self, namespace: dict, cell_errors: list[str] | None = None, *,
            timeout: float = CHECK_TIMEOUT_S, fork: bool = FORK) -> Report:
        """Every check on ``namespace``, each isolated and bounded by ``timeout`` seconds."""
        self.warm_up()
        runner = _run_forked if fork else _run_in_threads
        outcomes = runner(self.checks, namespace, timeout)
        results = [Result(chk, *outcome) for chk, outcome in zip(self.checks, outcomes,
                                                                  strict=True)]
        return Report(self, results, cell_errors or [])

    def warm_up(self) -> None:
        """Run ``prepare`` once in this process (``run`` does it before its first fork)."""
        if self.prepare is not None and not self._prepared:
            self.prepare()
            self._prepared = True

    def hint(self, namespace: dict | None = None) -> None:
        """Print the hint of each check that does not pass yet."""
        if namespace is None:
            namespace = inspect.currentframe().f_back.f_globals
        print(self.run(namespace).hints())

    def solution(self) -> None:
        """Print the solved cells of this drill."""
        print(solution_source(self.solution_path))

    def _record(self, report: Report, where: Path) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder(report, where)
        except OSError as exc:  # progress is a convenience: never let it break a check
            print(f"(progress not saved: {exc})")


# -- calling the learner's code --------------------------------------------------------------------

def need(namespace: dict, *names: str, known: Iterable[str] = ()):
    """The learner's names; NotAttempted, naming every missing one, while any is undefined.

    ``known`` are the other names the drill defines or asks for. A name that is missing, or
    still the stub, while the learner wrote something that looks like it under another name is
    a Flaw that names both: a renamed entry point is an attempt, not a blank.
    """
    known = {*known, *names}
    missing = [name for name in names if namespace.get(name) is None]
    for name in missing:
        _renamed(namespace, name, known, missing=True)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise NotAttempted(f"{_and(missing)} {verb} not defined yet: write it and run its cell")
    values = [namespace[name] for name in names]
    for name, value in zip(names, values, strict=True):
        if _is_stub_object(value):
            _renamed(namespace, name, known, missing=False)
    return values[0] if len(values) == 1 else values


def _renamed(namespace: dict, name: str, known: set[str], *, missing: bool) -> None:
    """Raise the Flaw for ``name`` when the learner's code has a likely renamed version of it."""
    found = _likely_rename(namespace, name, known)
    if found is None:
        return
    if missing:
        raise Flaw(f"your notebook defines `{found}`, the check looks for `{name}`",
                   got=f"`{found}` is defined, `{name}` is not",
                   expected=f"`{name}`: the drill, the agent and this check use that name",
                   hint=f"Rename `{found}` to `{name}` (or add `{name} = {found}`), run its "
                        "cell, then check again.")
    raise Flaw(f"your notebook defines `{found}`, but `{name}`, the one the check calls, is "
               "still the stub", got=f"`{found}` written, `{name}` still raises "
               "NotImplementedError", expected=f"your code in `{name}` itself",
               hint=f"Put your code in `{name}` (or rename `{found}` to `{name}`), run its "
                    "cell, then check again.")


def _likely_rename(namespace: dict, name: str, known: set[str]) -> str | None:
    """The learner's own definition whose name is most like ``name``, if any is alike enough:
    a function or class for a function or class, a value for a CONSTANT."""
    best: tuple[float, str] | None = None
    for other, value in list(namespace.items()):
        if other in known or other.startswith("_") or value is None or inspect.ismodule(value):
            continue
        if name.isupper() != (not callable(value)):  # data for data, code for code
            continue
        if callable(value) and not _defined_by_learner(value):
            continue
        if not name.isupper() and _is_stub_object(value):
            continue
        score = _likeness(name, other)
        if score and (best is None or score > best[0]):
            best = (score, other)
    return best[1] if best else None


def _defined_by_learner(value) -> bool:
    return any(is_learner_file(fn.__code__.co_filename) for fn in _functions_of(value))


def _is_stub_object(value) -> bool:
    """A function that is the stub, or a class whose every method is."""
    functions = _functions_of(value)
    return bool(functions) and all(is_stub(fn) for fn in functions)


def _words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return {word for word in spaced.split("_") if len(word) >= 4}


def _likeness(wanted: str, other: str) -> float:
    """How alike two names are, 0 when not alike enough to be the same thing renamed.

    >>> [_likeness("review", name) for name in ("make_review", "rubber_stamp")]
    [0.9, 0.0]
    >>> _likeness("TimedApproval", "TimeoutApproval") >= 0.7
    True
    """
    a, b = wanted.lower(), other.lower()
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    if min(len(a), len(b)) >= 4 and (a in b or b in a):
        return max(ratio, 0.9)
    if _words(wanted) & _words(other):
        return max(ratio, 0.7)
    return ratio if ratio >= 0.75 else 0.0


def attempt(label: str, fn: Callable, *args, expected: str | None = None,
            hint: str | None = None, **kwargs):
    """Call the learner's ``fn`` as ``label`` says (e.g. ``"policy_for('x')"``).

    A stub's NotImplementedError means not attempted; any other error becomes a Flaw that says
    which call raised what, on which line of the learner's code, never a traceback.
    """
    try:
        return fn(*args, **kwargs)
    except (NotAttempted, Flaw):
        raise
    except Exception as exc:
        raise learner_error(exc, label, expected=expected, hint=hint) from None


def learner_error(exc: BaseException, label: str, *, expected: str | None = None,
                  hint: str | None = None) -> Exception:
    """NotAttempted for a stub's NotImplementedError, else a Flaw describing ``exc``."""
    where = learner_frame(exc.__traceback__)
    if isinstance(exc, NotImplementedError) and where is not None:
        return NotAttempted(f"`{where.name}` still raises NotImplementedError")
    return Flaw(f"{label} raised {describe(exc)}", tried=label,
                got=f"{type(exc).__name__} {_at(where)}", expected=expected,
                hint=hint or "Read the line named above: that is where your code stopped.")


_STUB_PROLOGUE = frozenset({"RESUME", "NOP", "RETURN_GENERATOR", "POP_TOP", "COPY_FREE_VARS",
                            "MAKE_CELL"})  # what every function (a coroutine too) starts with
_STUB_BETWEEN = frozenset({"LOAD_CONST", "PRECALL", "CALL", "PUSH_NULL", "KW_NAMES",
                           "CALL_FUNCTION", "CALL_FUNCTION_KW"})


def is_stub(fn) -> bool:
    """True while ``fn``'s body is only the stub's ``raise NotImplementedError`` (or
    ``raise NotImplementedError("...")``; docstring and comments aside). Read from its bytecode,
    so nothing of the learner's runs (and no source file is searched for).

    >>> def stub():
    ...     "Docstring."
    ...     raise NotImplementedError  # TODO
    >>> def done():
    ...     raise NotImplementedError("not for this shape") if False else None
    >>> is_stub(stub), is_stub(done), is_stub(len)
    (True, False, False)
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    ops = [i for i in dis.get_instructions(code) if i.opname not in _STUB_PROLOGUE]
    return (len(ops) >= 2 and ops[-1].opname == "RAISE_VARARGS"
            and ops[0].opname in ("LOAD_GLOBAL", "LOAD_NAME")
            and ops[0].argval == "NotImplementedError"
            and all(op.opname in _STUB_BETWEEN for op in ops[1:-1]))


def describe(exc: BaseException) -> str:
    """``KeyError: 'x'`` in one line, at most 160 characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}"


def learner_frame(tb) -> traceback.FrameSummary | None:
    """The innermost frame of a traceback that runs the learner's code, if any."""
    frames = [f for f in traceback.extract_tb(tb) if is_learner_file(f.filename)]
    return frames[-1] if frames else None


def _at(frame: traceback.FrameSummary | None) -> str:
    if frame is None:
        return "(inside a library, called from your code)"
    line = (frame.line or "").strip()
    return f"in `{frame.name}`, line {frame.lineno}" + (f": {line}" if line else "")


_LEARNER_FILES: set[str] = set()  # file names of cells run by run_notebook_cells
_KERNEL_CELL = re.compile(r"^<ipython-input-|[/\\]ipykernel_\d+[/\\]")  # IPython's cell files


def is_learner_file(filename: str) -> bool:
    return filename in _LEARNER_FILES or bool(_KERNEL_CELL.search(filename))


def learner_files_of(namespace: dict) -> None:
    """Remember the files the learner's functions and classes were compiled from."""
    module = namespace.get("__name__")
    for value in list(namespace.values()):
        for fn in _functions_of(value):
            if getattr(fn, "__module__", None) == module and hasattr(fn, "__code__"):
                _LEARNER_FILES.add(fn.__code__.co_filename)


def _functions_of(value) -> Iterable:
    if inspect.isclass(value):
        return [v for v in vars(value).values() if inspect.isfunction(v)]
    return [value] if inspect.isfunction(value) else []


# -- running checks, isolated and bounded ----------------------------------------------------------

_check_ends_at: float | None = None  # when the running check's time is up (monotonic)


def time_left() -> float:
    """Seconds until the running check's deadline: a check sizes its waits with it, so a slow
    answer gets its own message before the deadline turns it into a hang."""
    if _check_ends_at is None:
        return CHECK_TIMEOUT_S
    return max(0.0, _check_ends_at - time.monotonic())


def _run_one(chk: Check, namespace: dict, timeout: float) -> tuple[str, str, str]:
    """(status, message, hint) of one check, every exception turned into words."""
    global _check_ends_at
    _check_ends_at = time.monotonic() + timeout
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            chk.run(namespace)
    except NotAttempted as exc:
        return NOT_ATTEMPTED, str(exc), ""
    except Flaw as exc:
        return FAIL, exc.message(), exc.hint or ""
    except AssertionError as exc:
        return FAIL, str(exc) or "the check's assertion failed", ""
    except BaseException as exc:  # raised (or exited) where no probe expected it
        if learner_frame(exc.__traceback__) is None:
            return (FAIL, f"the check stopped on {describe(exc)}, outside your code",
                    "Run your cells yourself: if they work, this is a bug in the kit's check "
                    "(please report it with this message).")
        made = learner_error(exc, "your code")
        if isinstance(made, NotAttempted):
            return NOT_ATTEMPTED, str(made), ""
        return FAIL, made.message(), made.hint or ""
    return PASS, "", ""


def _hang(timeout: float, where: str) -> tuple[str, str, str]:
    return (FAIL, f"your code did not finish within {timeout:g} s{where}",
            "Look for a loop that never ends, or a lock or wait that is never released (a "
            "threading.Lock taken twice by the same thread blocks forever; an RLock does not).")


def _run_forked(checks: list[Check], namespace: dict, timeout: float) -> list[tuple]:
    """Each check in a child process of its own, all at once: what one check does to the
    learner's objects (a module-level cache, a class attribute) never reaches another. Past
    the deadline a child dumps its threads' stacks (faulthandler) and exits, so the message
    can say where it hung."""
    learner_files_of(namespace)
    children = []
    try:
        gc.freeze()  # the children's collector then leaves the parent's objects (and pages) alone
        try:
            for chk in checks:
                children.append(_fork(chk, namespace, timeout))
        finally:
            gc.unfreeze()
        outputs = _collect(children, timeout + KILL_GRACE_S)
    finally:
        for pid, _ in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
    return [_outcome(text, finished, timeout) for text, finished in outputs]


def _fork(chk: Check, namespace: dict, timeout: float) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns about fork in a threaded process (a kernel is one). The child only
        # runs the check's Python code, never touches the parent's sockets, and ends with _exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    try:  # the child: nothing it prints reaches the notebook or the terminal
        os.close(read_end)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = sys.stderr = io.StringIO()
        out = os.fdopen(write_end, "w", encoding="utf-8")
        faulthandler.dump_traceback_later(timeout, exit=True, file=out)
        outcome = _run_one(chk, namespace, timeout)
        faulthandler.cancel_dump_traceback_later()
        out.write(json.dumps({"outcome": outcome}))
        out.flush()
    finally:
        os._exit(0)


def _collect(children: list[tuple[int, int]], deadline_s: float) -> list[tuple[str, bool]]:
    """What each child wrote, and whether it closed its pipe before the deadline."""
    chunks = {fd: [] for _, fd in children}
    open_fds = set(chunks)
    deadline = time.monotonic() + deadline_s
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.discard(fd)
                os.close(fd)
    for fd in open_fds:
        os.close(fd)
    return [(b"".join(chunks[fd]).decode("utf-8", "replace"), fd not in open_fds)
            for _, fd in children]


def _outcome(text: str, finished: bool, timeout: float) -> tuple[str, str, str]:
    """The child's result; else a hang (its stacks dump, or silence past the deadline), or a
    crash (it ended without a word)."""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return tuple(json.loads(text)["outcome"])
    if "most recent call first" in text:  # faulthandler's dump: the child hit its deadline
        return _hang(timeout, _hung_in(_dumped_frames(text)))
    if not finished:
        return _hang(timeout, "")
    return (FAIL, "the check's process ended without a result: your code crashed Python "
            "(or called os._exit)", "Run the drill's cells yourself to see where it stops.")


_DUMPED_FRAME = re.compile(r'^\s+File "(.*)", line (\d+) in (\S+)', re.M)


def _dumped_frames(text: str) -> list[tuple[str, int, str]]:
    """(file, line, function) of every frame faulthandler dumped, innermost first per thread."""
    return [(f, int(n), name) for f, n, name in _DUMPED_FRAME.findall(text)]


def _hung_in(frames: Iterable[tuple[str, int, str]]) -> str:
    for filename, lineno, name in frames:
        if is_learner_file(filename):
            line = linecache.getline(filename, lineno).strip()
            return f" (in `{name}`, line {lineno}" + (f": {line})" if line else ")")
    return ""


def _run_in_threads(checks: list[Check], namespace: dict, timeout: float) -> list[tuple]:
    """Without fork: each check in a daemon thread; one that overruns is reported and left."""
    learner_files_of(namespace)
    outcomes = []
    for chk in checks:
        box: list = []
        worker = threading.Thread(target=lambda c=chk, b=box: b.append(
            _run_one(c, namespace, timeout)),
                                  daemon=True, name=f"selfcheck: {chk.name}")
        worker.start()
        worker.join(timeout)
        if box:
            outcomes.append(box[0])
            continue
        stack = sys._current_frames().get(worker.ident)
        frames = [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
                  for f, _ in traceback.walk_stack(stack)] if stack else []
        status, message, hint = _hang(timeout, _hung_in(frames))
        outcomes.append((status, message, hint + " It is still running: restart the kernel."))
    return outcomes


# -- the machine a check varies -------------------------------------------------------------------

# Local time zones a check tries besides the machine's own, as POSIX TZ strings so they need no
# time zone database: Kiritimati (UTC+14) and Adak (UTC-10, UTC-9 in summer), the two furthest
# from UTC on either side. An answer that reads the local clock where it needs UTC passes on a
# machine set to UTC and fails in one of these.
FAR_TIME_ZONES = ("<+14>-14", "<-10>10<-09>,M3.2.0,M11.1.0")


def time_zones() -> list[str | None]:
    """The zones to try: None (the machine's own), then the far ones where the platform can
    switch zones (``time.tzset``, POSIX)."""
    return [None, *FAR_TIME_ZONES] if hasattr(time, "tzset") else [None]


@contextlib.contextmanager
def local_time_zone(zone: str | None):
    """Make ``zone`` this process's local time zone while the block runs (None: leave it).

    A check runs in a child process of its own, so the change reaches nothing else.

    >>> with local_time_zone("<+14>-14"):
    ...     datetime.now().astimezone().utcoffset().total_seconds() / 3600
    14.0
    """
    if zone is None or not hasattr(time, "tzset"):
        yield
        return
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


# -- reading and running a saved notebook ----------------------------------------------------------

def _read_notebook(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise CheckError(f"{path} is a folder: give one notebook, e.g. "
                         f"{path / 'NAME.ipynb'}, or no path to check every drill")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckError(f"no notebook at {path}: give a drill notebook's path, e.g. "
                         "drills/01_classify_email_actions.ipynb") from None
    except UnicodeDecodeError:
        raise CheckError(f"{path} is not a notebook (not UTF-8 text)") from None
    except OSError as exc:
        raise CheckError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckError(f"{path} is not a readable notebook (bad JSON: {exc})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list) or not all(
            isinstance(cell, dict) for cell in notebook["cells"]):
        raise CheckError(f"{path} is JSON but not a Jupyter notebook (no list of cells)")
    return notebook


def _code_cells(path: Path) -> list[dict]:
    return [c for c in _read_notebook(path)["cells"] if c.get("cell_type") == "code"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _tags(cell: dict) -> list[str]:
    metadata = cell.get("metadata")
    return metadata.get("tags", []) if isinstance(metadata, dict) else []


def drill_key_of(path: Path) -> str:
    """The drill a notebook belongs to, from its metadata ``hitl_kit.drill``."""
    metadata = _read_notebook(path).get("metadata")
    kit = metadata.get("hitl_kit") if isinstance(metadata, dict) else None
    key = kit.get("drill") if isinstance(kit, dict) else None
    if not key:
        raise CheckError(f"{path} is not a drill notebook (its metadata names no hitl_kit "
                         "drill); drills are in drills/")
    return str(key)


def solution_source(path: Path) -> str:
    cells = [c for c in _code_cells(path) if SOLUTION_TAG in _tags(c)]
    return "\n\n".join(_source(c).strip() for c in cells)


def code_of_cells(cells: Iterable[tuple[int, str]], label: str) -> list[tuple[int, object]]:
    """Compile each (number, source) cell (magics and shell escapes dropped, top-level ``await``
    allowed, as in IPython) under a file name the checks know as the learner's."""
    compiled = []
    for number, source in cells:
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("!", "%"))]
        text = "\n".join(lines) + "\n"
        filename = f"{label} cell {number}"
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        _LEARNER_FILES.add(filename)
        try:
            code = compile(text, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            code = exc
        compiled.append((number, code))
    return compiled


def run_cells(compiled: list[tuple[int, object]], namespace: dict,
              timeout: float = CELL_TIMEOUT_S, budget: float | None = None) -> list[str]:
    """Run compiled cells in order in ``namespace``; the errors, one line each. A cell that
    raises is reported and the next cells still run, so one mistake does not hide the others;
    a stub called at top level (NotImplementedError) is left for the checks to call not attempted.
    Each cell gets ``timeout`` seconds, and all of them together ``budget`` (a cell started
    after the budget is spent still gets LATE_CELL_S: defining a function takes less).

    The cells get an event loop of their own, as in a kernel. In a thread that already runs a
    loop (a kernel's cell calling this, say) they run on a thread of their own instead.
    """
    errors: list[str] = []
    if threading.current_thread() is threading.main_thread() and not in_event_loop():
        _run_cells_here(compiled, namespace, timeout, budget, errors, {})
        return errors
    return _run_cells_on_a_thread(compiled, namespace, timeout, budget, errors)


def _run_cells_here(compiled, namespace: dict, timeout: float, budget: float | None,
                    errors: list[str], now_running: dict) -> None:
    loop = asyncio.new_event_loop()  # one loop for the whole notebook, as a kernel keeps one
    ends_at = None if budget is None else time.monotonic() + budget
    try:
        for number, code in compiled:
            if isinstance(code, SyntaxError):
                errors.append(f"cell {number} has a SyntaxError: {code.msg} "
                              f"(line {code.lineno})")
                continue
            allowed = timeout if ends_at is None else min(
                timeout, max(LATE_CELL_S, ends_at - time.monotonic()))
            now_running.update(cell=number, since=time.monotonic(), allowed=allowed)
            try:
                with _quiet(), _deadline(allowed):
                    loop.run_until_complete(_cell(code, namespace))
            except NotImplementedError:
                continue
            except _CellTimeout as exc:
                errors.append(f"cell {number} did not finish within {allowed:.2g} s"
                              f"{_hung_in(exc.frames)}")
            except Exception as exc:
                errors.append(f"cell {number} raised {describe(exc)} "
                              f"{_at(learner_frame(exc.__traceback__))}")
    finally:
        now_running.clear()
        _close(loop)


def _run_cells_on_a_thread(compiled, namespace: dict, timeout: float, budget: float | None,
                           errors: list[str]) -> list[str]:
    """The cells on a worker thread, watched from here: a cell past its deadline is reported
    and the cells after it are not run (the stuck thread cannot be stopped, only left)."""
    now_running: dict = {}
    streams = sys.stdout, sys.stderr
    worker = threading.Thread(target=_run_cells_here, daemon=True, name="hitl-kit cells",
                              args=(compiled, namespace, timeout, budget, errors,
                                    now_running))
    worker.start()
    while worker.is_alive():
        worker.join(0.02)
        running = dict(now_running)
        if (running and time.monotonic() - running["since"] > running["allowed"]
                and worker.is_alive()):
            sys.stdout, sys.stderr = streams  # the stuck cell never leaves its redirect
            stack = sys._current_frames().get(worker.ident)
            frames = [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
                      for f, _ in traceback.walk_stack(stack)] if stack else []
            return [*errors, f"cell {running['cell']} did not finish within "
                             f"{running['allowed']:.2g} s{_hung_in(frames)}; the cells after it "
                             "were not run"]
    return errors


def in_event_loop() -> bool:
    """Whether this thread runs an event loop right now."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _cell(code, namespace: dict) -> None:
    """One cell, run inside the event loop as in a kernel (so ``asyncio.get_running_loop()``
    works in it, and ``asyncio.run`` does not); top-level ``await`` is awaited."""
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


def run_notebook_cells(path: Path, timeout: float = CELL_TIMEOUT_S,
                       budget: float | None = CELLS_BUDGET_S) -> tuple[dict, list[str]]:
    """Run a saved notebook's code cells (not its self-check cell) in a fresh namespace, each
    within ``timeout`` seconds and all of them within ``budget``. A message names a cell by its
    place among all the notebook's cells, markdown included, as a learner counts them in
    JupyterLab from the top."""
    path = Path(path)
    cells = [(number, _source(c))
             for number, c in enumerate(_read_notebook(path)["cells"], start=1)
             if c.get("cell_type") == "code" and SELFCHECK_TAG not in _tags(c)]
    namespace: dict = {"__name__": "__drill__"}
    errors = run_cells(code_of_cells(cells, path.name), namespace, timeout, budget)
    return namespace, errors


@contextlib.contextmanager
def _quiet():
    """What a cell prints or warns is for the notebook, not for the checker's report."""
    with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
          warnings.catch_warnings()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _threads_quiet():
    """A thread the learner's cells started (a timer) that raises prints no traceback."""
    previous = threading.excepthook
    threading.excepthook = lambda args: None
    try:
        yield
    finally:
        threading.excepthook = previous


class _CellTimeout(BaseException):  # not an Exception: a learner's `except Exception` can't eat it
    def __init__(self, frames):
        super().__init__("cell timed out")
        self.frames = frames


@contextlib.contextmanager
def _deadline(seconds: float):
    """Interrupt the main thread after ``seconds`` (POSIX, main thread only; else no limit)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        stack = [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
                 for f, _ in traceback.walk_stack(frame)]
        raise _CellTimeout(stack)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the notebook's cells left running on their loop, then close it quietly."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    with contextlib.suppress(BaseException):
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


# -- small words -----------------------------------------------------------------------------------

def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    return f"{seconds / 3600:.1f} h ago"


def shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    return str(path)
