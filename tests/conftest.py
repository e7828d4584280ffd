import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def world():
    """A fresh demo world (in memory)."""
    from hitl_kit.world import World

    return World()


@pytest.fixture
def agent(world):
    """The approval agent on that world, with the offline model and MemorySaver."""
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.llm import OfflineChatModel

    return ApprovalAgent(OfflineChatModel(), world.tools(), world=world)


def committed_copy(path: Path, tmp_path: Path) -> Path:
    """The file as committed at HEAD (a learner's edits in drills/ must not change what the suite
    sees as 'pristine'); the working copy when this is not a git checkout or the file is new."""
    rel = path.relative_to(ROOT).as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True)
    if shown.returncode != 0:
        return path
    copy = tmp_path / path.name
    copy.write_bytes(shown.stdout)
    return copy


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitl_kit", *args], cwd=ROOT, text=True,
                          capture_output=True, env=env, timeout=60)


def with_cell_replaced(src_path, tmp_path, old, new):
    """A copy of a notebook with `old` replaced by `new` in the one cell that holds it."""
    notebook = json.loads(src_path.read_text())
    hits = 0
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if old in source:
            cell["source"] = source.replace(old, new)
            hits += 1
    assert hits == 1, f"expected {old!r} in exactly one cell"
    out = tmp_path / src_path.name
    out.write_text(json.dumps(notebook))
    return out


class SqliteBackend:
    """The default backend: the checkpointer, the decision ledger (in the checkpointer's file)
    and the audit trail, each a SQLite file in the test's folder."""

    name = "sqlite"

    def checkpointer(self, folder: Path):
        from hitl_kit.approval import durable_checkpointer

        return durable_checkpointer(str(folder / "checkpoints.db"))

    def ledger(self, folder: Path):
        from hitl_kit.decisions import DecisionLedger

        return DecisionLedger(str(folder / "checkpoints.db"))

    def audit(self, folder: Path):
        from hitl_kit.audit import AuditTrail

        return AuditTrail(folder / "audit.db", head_path=folder / "audit.head", durable=False)

    def copy(self, source: Path, folder: Path) -> None:
        """Make ``folder`` hold what ``source`` holds (its connections closed): many trials
        start from one prepared state."""
        shutil.copytree(source, folder, dirs_exist_ok=True)


BACKENDS = {"sqlite": SqliteBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """Each durable backend in turn: one test body, run against every backend."""
    return BACKENDS[request.param]()


FAULT_COUNTS: dict[str, int] = {}


@pytest.fixture(scope="session")
def fault_counts() -> dict[str, int]:
    """Counts the fault suite reports at the end of the run."""
    return FAULT_COUNTS


def pytest_terminal_summary(terminalreporter):
    if FAULT_COUNTS:
        terminalreporter.section("fault suite counts")
        for name, count in FAULT_COUNTS.items():
            terminalreporter.write_line(f"{count:>6}  {name}")
