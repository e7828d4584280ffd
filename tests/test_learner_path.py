"""The learner's path: nothing read before a drill gives its answer away."""

import ast
import json
import re

from hitl_kit.email_classes import EMAIL_ASSISTANT_ACTIONS
from hitl_kit.policy import ACTION_TABLE, SHOWN_ACTIONS, Policy, Reversibility

from .conftest import ROOT, copy_of, with_cell_replaced

# What a learner reads before drill 1: the first two notebooks, the modules they point to, the
# README, and the drill itself.
BEFORE_DRILL_1 = ["notebooks/00_start_here.ipynb", "notebooks/01_classify_actions.ipynb",
                  "hitl_kit/policy.py", "hitl_kit/world.py", "README.md",
                  "drills/01_classify_email_actions.ipynb"]
VERDICTS = [k.value for k in Reversibility] + [p.value for p in Policy]


def test_drill1_answer_is_not_given_away_before_the_drill():
    leaks = []
    for rel in BEFORE_DRILL_1:
        for number, line in enumerate((ROOT / rel).read_text().splitlines(), start=1):
            for action, _ in EMAIL_ASSISTANT_ACTIONS:
                if action in line and any(verdict in line for verdict in VERDICTS):
                    leaks.append(f"{rel}:{number}: {line.strip()}")
    assert not leaks, "drill 1's answer shows before the drill:\n" + "\n".join(leaks)


def test_notebook_01_shows_the_table_without_the_drill_actions():
    drill_actions = {action for action, _ in EMAIL_ASSISTANT_ACTIONS}
    assert not drill_actions & {action for action, _ in SHOWN_ACTIONS}
    assert set(ACTION_TABLE) == set(SHOWN_ACTIONS) | set(EMAIL_ASSISTANT_ACTIONS)
    for rel in BEFORE_DRILL_1[:2]:
        assert "ACTION_TABLE" not in (ROOT / rel).read_text(), f"{rel} shows the full table"


def path_table(text: str) -> list[str]:
    """The notebooks named in the first column holding `notebooks/...` of a markdown table; the
    table must be one block (a blank line would end it and turn the rest into a paragraph)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and "notebook" in line)
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    named = [cell.strip(" `").removeprefix("notebooks/") for row in block[2:]
             for cell in row.split("|") if cell.strip(" `").startswith("notebooks/")]
    rest = "\n".join(lines[start + len(block):])
    stray = [name for name in named if f"| `notebooks/{name}`" in rest]
    assert not stray, f"rows after the end of the table: {stray}"
    return named


def test_the_path_tables_list_exactly_the_notebooks_that_exist():
    import json

    existing = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    start_here = json.loads((ROOT / "notebooks" / "00_start_here.ipynb").read_text())
    markdown = "\n".join("".join(c["source"]) for c in start_here["cells"]
                         if c["cell_type"] == "markdown")
    assert path_table(markdown) == existing
    assert path_table((ROOT / "README.md").read_text()) == existing


def test_an_unattended_run_never_touches_the_learners_progress(tmp_path, monkeypatch):
    import hitl_kit.course.progress as progress_module
    from hitl_kit.course.checks import progress_table
    from hitl_kit.course.progress import PROGRESS_ENV
    from hitl_kit.course.review import notebook_progress

    learners = tmp_path / ".hitl_kit" / "progress.json"
    monkeypatch.setattr(progress_module, "ROOT", tmp_path)  # where the learner's file would be
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setenv("HITL_KIT_UNATTENDED", "1")
    assert progress_module.progress_path() == learners
    progress = notebook_progress()
    progress.add_weak_area("made up by a headless run")
    progress_table()  # checks every drill and records the results
    assert progress.path != learners and not learners.exists()


def test_notebooks_showing_progress_ask_for_it_the_unattended_safe_way():
    import json

    for name in ("00_start_here", "09_review"):
        cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        first = next(i for i, src in enumerate(code)
                     if "progress_table()" in src or "ChecklistPanel(" in src)
        assert any("notebook_progress()" in src for src in code[:first + 1]), name
        assert not any("ChecklistPanel()" in src or "Progress()" in src for src in code), name


def test_every_command_a_learner_copies_uses_the_venv_python():
    """``python -m hitl_kit`` fails with a system python; the README installs into .venv."""
    import re

    bare = re.compile(r"(?<![/\w.])python3? -m (hitl_kit|jupyter|pytest)")
    files = [ROOT / "README.md"] + sorted(p for d in ("notebooks", "drills", "solutions")
                                          for p in (ROOT / d).glob("*.ipynb"))
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files
             for n, line in enumerate(p.read_text().splitlines(), start=1) if bare.search(line)]
    assert not found, "use .venv/bin/python -m ...:\n" + "\n".join(found)


def test_the_readme_names_every_module_of_the_kit():
    readme = (ROOT / "README.md").read_text()
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hitl_kit").glob("*.py")
                     if p.name != "__init__.py")
    missing = [m for m in modules if f"`{m}`" not in readme]
    assert not missing, f"README's module table does not name: {missing}"


def reading_path() -> list[tuple[str, int, int]]:
    """The README's reading path: (module, the lines it states, the code lines it states)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- reading-path -->")[1].split("<!-- /reading-path -->")[0]
    return [(m.group(1), int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"\| `(hitl_kit/[\w/]+\.py)` \| (\d+) \| (\d+) \|", block)]


def code_lines(source: str) -> int:
    """Lines that are neither blank, nor a comment alone, nor part of a docstring (a module's,
    a class's, a function's, or one under a field)."""
    tree = ast.parse(source)
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for i, statement in enumerate(node.body):
                if (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
                        and isinstance(statement.value.value, str)
                        and (i == 0 or isinstance(node, ast.ClassDef))):
                    docs.update(range(statement.lineno, statement.end_lineno + 1))
    return sum(1 for n, line in enumerate(source.splitlines(), start=1)
               if line.strip() and not line.strip().startswith("#") and n not in docs)


def test_the_reading_path_states_each_modules_true_size():
    path = reading_path()
    assert len(path) >= 4
    wrong = {}
    for module, lines, code in path:
        source = (ROOT / module).read_text()
        if (lines, code) != (len(source.splitlines()), code_lines(source)):
            wrong[module] = ((lines, code), (len(source.splitlines()), code_lines(source)))
    assert not wrong, f"README's reading path: (stated, actual) (lines, code lines): {wrong}"
    lines, code = (sum(row[i] for row in path[:4]) for i in (1, 2))
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"(the first four rows) are {lines:,} lines together, {code:,} of them code" in text


def test_code_lines_leave_out_docstrings_comments_and_blank_lines():
    source = ('"""Module."""\n\nimport os  # why\n\n\nclass A:\n    """A."""\n\n    x: int\n'
              '    """Field."""\n\n    def f(self):\n        """F,\n        on two lines."""\n'
              '        # alone\n        return "not a docstring"\n')
    assert code_lines(source) == 5  # import, class, field, def, return


def test_each_module_of_the_reading_path_is_printed_by_its_notebook():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- reading-path -->")[1].split("<!-- /reading-path -->")[0]
    for module, number in re.findall(r"`hitl_kit/(\w+)\.py` \| \d+ \| \d+ \| notebook (\d+)",
                                     block):
        [notebook] = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
        code = "\n".join("".join(cell["source"]) for cell in json.loads(
            notebook.read_text())["cells"] if cell["cell_type"] == "code")
        names = re.findall(rf"from hitl_kit import {module}(?: as (\w+))?", code)
        names = [alias or module for alias in names]
        for imported in re.findall(rf"from hitl_kit\.{module} import ([\w, ]+)", code):
            names += [n.split()[-1] for n in imported.split(",") if n.strip()]
        printed = [n for n in names if re.search(rf"getsource\(\s*{n}\b", code)]
        assert printed, f"{notebook.name} does not print the code of hitl_kit/{module}.py"


def test_drill_1s_part_a_cell_can_be_replaced_whole_without_breaking_part_b(tmp_path):
    """A learner pastes a whole table cell of their own (no TODO in it): part B's cells, which
    still hold TODO blanks, must keep running (TODO is defined in the setup cell)."""
    import json

    from hitl_kit.course.checks import check_notebook, get_drill
    from hitl_kit.course.selfcheck import NOT_ATTEMPTED, PASS

    drill = get_drill("drill1")

    def table_cell(path):
        cells = json.loads(path.read_text())["cells"]
        [source] = ["".join(c["source"]) for c in cells
                    if c["cell_type"] == "code" and "EMAIL_TABLE = {" in "".join(c["source"])]
        return source

    stub = copy_of(drill.drill_path, tmp_path)
    mine = with_cell_replaced(stub, tmp_path, table_cell(stub), table_cell(drill.solution_path))
    report = check_notebook(mine)
    assert report.cell_errors == [], report.cell_errors
    statuses = {r.status for r in report.results}
    assert PASS in statuses and NOT_ATTEMPTED in statuses, str(report)


SERVER_USES = ("http.", "server.url", "fake_slack.click", "slack.post", "mailer.ask",
               "mail_server.wait_for", "httpx.post")


def test_notebook_05_says_which_cell_restarts_its_servers_and_checks_them_first():
    """After the servers' fifteen minutes a cell that talks to them says so in one line and
    names the cell to re-run (numbered as a learner counts cells, markdown included), instead
    of a connection error."""
    import json
    import re

    cells = json.loads((ROOT / "notebooks" / "05_approval_patterns.ipynb").read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells]
    starts = next(n for n, source in enumerate(sources, start=1) if "app.serve(" in source)
    said = re.findall(r"re-run cell (\d+)", sources[starts - 1])
    assert said == [str(starts)], f"the servers start in cell {starts}, the hint says {said}"
    unchecked = [n for n, (cell, source) in enumerate(zip(cells, sources, strict=True), start=1)
                 if n > starts and cell["cell_type"] == "code" and "def stop_servers" not in source
                 and any(use in source for use in SERVER_USES)
                 and not source.startswith("servers_up()\n")]
    assert not unchecked, f"cells {unchecked} talk to the servers without servers_up() first"
