"""Command line: ``.venv/bin/python -m hitl_kit check [NOTEBOOK]``, ``hint``, ``solution``,
``run``, ``resume``, ``env``, ``lab``, ``serve``."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

DESCRIPTION = """The kit's commands: check your drills, get hints and solutions, run a task and
approve its actions in the terminal, resume what is pending, serve the approvals web app, open
JupyterLab on your own copy of the notebooks."""
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
STATE_FILES = ("world.db", "checkpoints.db", "audit.db")  # what a --state folder holds


def _is_path(target: str) -> bool:
    """A notebook path (``drills/x.ipynb``) rather than a drill key (``drill1``)."""
    return target.endswith(".ipynb") or "/" in target or os.sep in target or Path(target).exists()


def _drill_for(target: str):
    from hitl_kit.course.checks import get_drill
    from hitl_kit.course.selfcheck import drill_key_of

    return get_drill(drill_key_of(Path(target)) if _is_path(target) else target)


def _notebook_for(target: str) -> Path:
    """The notebook a command works on: the path given, or for a drill key your copy of it."""
    return Path(target) if _is_path(target) else _drill_for(target).learner_path


def cmd_check(target: str | None) -> int:
    from hitl_kit.course.checks import check_notebook
    from hitl_kit.course.selfcheck import CORRECT

    if target:
        report = check_notebook(_notebook_for(target))
        print(report)
        return 0 if report.status == CORRECT else 1
    from hitl_kit.course.checks import progress_table

    table, all_correct = progress_table()
    print(table)
    return 0 if all_correct else 1


def cmd_hint(target: str) -> int:
    from hitl_kit.course.checks import check_notebook

    print(check_notebook(_notebook_for(target)).hints())
    return 0


def cmd_solution(target: str) -> int:
    drill = _drill_for(target)
    print(f"# {drill.title}: the solved cells of solutions/{drill.notebook}")
    drill.solution()
    return 0


def _sqlite_file(option: str, path: str, *, must_exist: bool = False) -> str:
    """``path`` when SQLite can keep a database there: an SQLite file, or a new file in a
    folder that exists; else ValueError saying what is wrong with it and what to give."""
    given = Path(path)
    if given.is_dir():
        raise ValueError(f"{option} {path} is a folder: give a file (a new name is fine)")
    if not given.exists():
        if must_exist:
            raise ValueError(f"{option} {path}: no such file; give one an earlier run made "
                             "(a --state folder's checkpoints.db)")
        if not given.parent.is_dir():
            raise ValueError(f"{option} {path}: the folder {given.parent} does not exist; create "
                             "it, or give a path in a folder that does")
        return path
    try:
        with given.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ValueError(f"{option} {path} cannot be read ({exc.strerror})") from None
    if header and header != SQLITE_HEADER:
        raise ValueError(f"{option} {path} is not an SQLite database: give a file an earlier run "
                         "made, or a new path")
    return path


def _state_folder(state: str) -> Path:
    """The ``--state`` folder, created if missing; ValueError when it cannot be one."""
    folder = Path(state)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--state {state} is a file: give a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--state {state}: cannot create that folder ({exc.strerror})") from None
    return folder


def _open_agent(world_path: str | None, state: str | None):
    """The agent the terminal commands use: everything in memory, the world in a file, or (with
    ``state``) world, checkpoints, ledger and audit trail in one folder that outlives the run."""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.backends import open_stores
    from hitl_kit.llm import get_chat_model
    from hitl_kit.world import World

    if state is not None:
        folder = _state_folder(state)
        for name in STATE_FILES:  # what an earlier run left there, if anything
            _sqlite_file("--state", str(folder / name))
        world_path = str(folder / "world.db")
    elif world_path is not None:
        _sqlite_file("--world", world_path)
    if world_path is None:
        world = World()
        print("world: a fresh demo world, gone when this command ends "
              "(--world PATH keeps one in a file, --state DIR keeps everything)")
    else:
        existed = Path(world_path).exists()
        world = World(world_path)
        print(f"world: {world_path} ({'as earlier runs left it' if existed else 'new'})")
    if state is None:
        return ApprovalAgent(get_chat_model(), world.tools(), world=world)
    stores = open_stores(folder=folder, head_path=folder / "audit.head")  # $HITL_KIT_DATABASE_URL
    print(f"state: {state} (paused approvals stay there: `.venv/bin/python -m hitl_kit resume "
          f"--state {state}` asks again)" + (f"; checkpoints, decisions and the audit trail in "
                                              f"{stores.where}" if stores.kind != "sqlite" else ""))
    return ApprovalAgent(get_chat_model(), world.tools(), world=world, **stores.for_agent())


def cmd_run(task: str, approver: str, world_path: str | None, state: str | None = None) -> int:
    import uuid

    from hitl_kit.terminal import approve_in_terminal

    agent = _open_agent(world_path, state)
    try:
        # A developer tool: whoever runs the task approves its actions (no requester set).
        outcome = agent.start(task, thread_id=f"cli-{uuid.uuid4()}")
        outcome = approve_in_terminal(agent, outcome, approver)
    except Exception as exc:
        if not _from_model_client(exc):
            raise
        cause = exc.__cause__ if _is_model_error(exc) and exc.__cause__ else exc
        print(f"error: the chat model failed: {_one_line(cause).rstrip('.')}. Check "
              "OPENAI_BASE_URL (an OpenAI-compatible server) and OPENAI_API_KEY, or unset "
              "OPENAI_API_KEY to run offline.", file=sys.stderr)
        return 2
    return 1 if outcome.paused else 0


def cmd_resume(approver: str, state: str) -> int:
    """Finish what a crash left behind, then ask about every approval still pending."""
    from hitl_kit.inbox import ApprovalInbox
    from hitl_kit.terminal import approve_in_terminal

    if not (Path(state) / "checkpoints.db").exists():
        raise ValueError(f"{state} holds no saved approvals: start one with `run ... --state "
                         f"{state}`")
    agent = _open_agent(None, state)
    inbox = ApprovalInbox(agent)  # opening it recovers crashed threads
    for done in inbox.recovered:
        print(f"recovered: {done}")
    threads = inbox.thread_ids()
    if not threads:
        print("nothing is waiting for approval")
        return 0
    paused = 0
    for thread_id in threads:
        print(f"\n-- thread {thread_id}")
        paused += approve_in_terminal(agent, agent.outcome(thread_id), approver).paused
    return 1 if paused else 0


DEBUG_ENV = "HITL_KIT_DEBUG"
MODEL_CLIENT_MODULES = ("openai", "httpx", "httpcore", "langchain_openai")


def _is_model_error(exc: BaseException) -> bool:
    from hitl_kit.approval import ModelError  # the kit's word for "the model failed"

    return isinstance(exc, ModelError)


def _from_model_client(exc: BaseException | None) -> bool:
    """Whether the exception (or one it was raised from) comes from the chat model's client,
    or is the kit's ModelError (a reply that could not be read, too)."""
    while exc is not None:
        if _is_model_error(exc):
            return True
        module = type(exc).__module__
        if module.split(".")[0] in MODEL_CLIENT_MODULES or module == "hitl_kit.llm":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _message(exc: BaseException) -> str:
    """The exception's message on one line (a KeyError's without the quotes its repr adds)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return " ".join(str(message).split())


def _one_line(exc: BaseException) -> str:
    message = _message(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def cmd_env() -> int:
    from hitl_kit.environment import describe

    print(describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=".venv/bin/python -m hitl_kit",
                                     description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check a drill notebook, or show progress on all drills")
    check.add_argument("notebook", nargs="?", help="a drill notebook (.ipynb), or a drill key "
                                                     "such as drill1 (your copy of it); none: "
                                                     "all drills")
    for name, text in (("hint", "hints for the checks that do not pass yet"),
                       ("solution", "print a drill's solved cells")):
        p = sub.add_parser(name, help=text)
        p.add_argument("drill", help="a drill notebook path, or a drill key such as drill1 "
                                     "(your copy of it)")
    sub.add_parser("env", help="offline or OpenAI mode, and the versions installed")
    lab = sub.add_parser("lab", help="open JupyterLab on notebook 00, with drills/ in reach")
    lab.add_argument("--port", type=int, help="listen on this port (default: 8888 or the next "
                                                "free one)")
    lab.add_argument("--token", help="the login token (default: a new random one)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    serve = sub.add_parser("serve", help="the approvals web app (dashboard, approval links) on "
                                          "127.0.0.1")
    serve.add_argument("--approver", action="append", default=[],
                       help="who may sign in and decide (repeat it; default: ana and bo)")
    serve.add_argument("--world", metavar="PATH", help="the demo world's SQLite file")
    serve.add_argument("--checkpoints", metavar="PATH",
                       help="decide the threads paused in this SQLite checkpointer file "
                            "(default: three demo requests)")
    serve.add_argument("--minutes", type=float, default=60, help="stop by itself after this "
                                                                 "long (default: 60)")
    run = sub.add_parser("run", help="run a task on the demo world, approving in the terminal")
    run.add_argument("task", help='e.g. "delete the test customer record"')
    run.add_argument("--approver", default="cli-user", help="your name in the decisions")
    run.add_argument("--world", metavar="PATH",
                     help="keep the demo world in this SQLite file across runs "
                          "(default: a fresh world each run)")
    run.add_argument("--state", metavar="DIR",
                     help="keep world, paused approvals and audit trail in this folder, so an "
                          "unanswered approval outlives the run")
    resume = sub.add_parser("resume", help="recover what a crash left, then answer every "
                                           "approval pending in a --state folder")
    resume.add_argument("--state", metavar="DIR", required=True,
                        help="the folder given to run --state")
    resume.add_argument("--approver", default="cli-user", help="your name in the decisions")
    args = parser.parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # e.g. `... | head` stopped reading: not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit fails no more
        return 141  # what a shell reports for a process ended by SIGPIPE
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of the kit's: one line, the traceback on request
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"error: {_one_line(exc)} (a bug in hitl_kit; {DEBUG_ENV}=1 shows the "
              "traceback)", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return cmd_check(args.notebook)
    if args.command == "hint":
        return cmd_hint(args.drill)
    if args.command == "solution":
        return cmd_solution(args.drill)
    if args.command == "run":
        if args.world and args.state:
            raise ValueError("give --world or --state, not both (--state keeps the world too)")
        return cmd_run(args.task, args.approver, args.world, args.state)
    if args.command == "resume":
        return cmd_resume(args.approver, args.state)
    if args.command == "serve":
        from hitl_kit.web import serve_from_cli

        if not (math.isfinite(args.minutes) and args.minutes > 0):
            raise ValueError(f"--minutes is how long the app runs: a positive number of minutes, "
                             f"not {args.minutes:g}")
        if args.world:
            _sqlite_file("--world", args.world)
        if args.checkpoints:
            _sqlite_file("--checkpoints", args.checkpoints, must_exist=True)
        return serve_from_cli(args.approver, args.world, args.checkpoints, args.minutes)
    if args.command == "lab":
        from hitl_kit.lab import launch

        return launch(args.port, args.token, open_browser=not args.no_browser)
    return cmd_env()


if __name__ == "__main__":
    sys.exit(main())
