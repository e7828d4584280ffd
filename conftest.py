"""Settings for the whole test run, notebooks included (nbval's kernels inherit them)."""

import os
import tempfile

# Nobody is there to click: notebooks press their own buttons with Button.click().
os.environ["HITL_KIT_UNATTENDED"] = "1"
# The suite keeps its own progress file: the learner's stays as the learner left it.
os.environ["HITL_KIT_PROGRESS"] = os.path.join(tempfile.mkdtemp(prefix="hitl-progress-"),
                                               "progress.json")
# ...and never reads the learner's copy of the notebooks (my-work/): the kit's own are checked.
os.environ["HITL_KIT_WORK"] = os.path.join(tempfile.mkdtemp(prefix="hitl-work-"), "my-work")
# The suite never talks to OpenAI, even on a machine where a key is set.
os.environ.pop("OPENAI_API_KEY", None)
# ...nor a PostgreSQL server of yours: the PostgreSQL tests start a private one.
os.environ.pop("HITL_KIT_DATABASE_URL", None)

# The files that take longest (seconds of one run, `pytest --durations=0`, 2026-12-06) start
# first: pytest-xdist hands out whole files in collection order (once told not to put the files
# with most tests first, below), so a long file handed out last leaves one worker busy while the
# others idle. Only the order changes; each file's own stays.
LONGEST_FIRST = (
    "tests/mutants/test_mutants.py",  # 79 s: every mutant of every drill (one shared run)
    "tests/mutants/test_messages.py",  # waits for the same run
    "tests/test_learner_work.py",  # 61 s
    "tests/browser/test_notebook04_countdown.py",  # 48 s, most of it a deadline running out
    "tests/test_selfcheck.py",  # 52 s
    "tests/test_crash.py",  # 49 s
    "tests/test_notebooks_attended.py",  # 46 s
    "tests/browser/test_notebook02_cards.py",  # 41 s
    "tests/browser/test_notebook05_inbox.py",  # 36 s
    "tests/browser/test_learner_copy.py",  # 35 s
    "tests/test_audit.py",  # 29 s
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's --no-loadscope-reorder
        config.option.loadscopereorder = False
