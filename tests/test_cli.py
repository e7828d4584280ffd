"""The command line's own behaviour: the lab launcher's arguments, errors as one clean line."""

import io
import os
import socket
import subprocess
import sys

import pytest

from hitl_kit import lab
from hitl_kit.__main__ import main


@pytest.mark.parametrize("root", [True, False])
def test_launcher_allows_root_only_as_root(monkeypatch, root):
    monkeypatch.setattr(lab, "is_root", lambda: root)
    argv = lab.lab_argv()
    assert ("--allow-root" in argv) is root
    assert "--ServerApp.ip=127.0.0.1" in argv and f"--ServerApp.root_dir={lab.work_dir()}" in argv
    assert "--no-browser" not in argv and not any("port" in a for a in argv)


def test_launcher_port_override_never_falls_back_to_another_port():
    argv = lab.lab_argv(port=9123, token="t", open_browser=False)
    assert {"--ServerApp.port=9123", "--ServerApp.port_retries=0",
            "--IdentityProvider.token=t", "--no-browser"} <= set(argv)


def test_launcher_keeps_the_learners_own_config_path(tmp_path):
    env = lab.lab_environment({"JUPYTER_CONFIG_PATH": "/theirs"}, tmp_path)
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(tmp_path), "/theirs"]
    page_config = lab.write_page_config(tmp_path) / "labconfig" / "page_config.json"
    assert lab.NEWS_PLUGIN in page_config.read_text()


# -- the learner's own copy ------------------------------------------------------------------------

def kit_notebooks() -> list[str]:
    return sorted(p.relative_to(lab.ROOT).as_posix() for folder in lab.COPIED_FOLDERS
                  for p in (lab.ROOT / folder).glob("*.ipynb"))


def test_the_learners_copy_is_made_once_and_never_overwritten(tmp_path):
    import json

    work = tmp_path / "my-work"
    copied = lab.prepare_work_dir(work)
    assert sorted(p.relative_to(work).as_posix() for p in copied) == kit_notebooks()
    for rel in kit_notebooks():
        source, copy = (json.loads((root / rel).read_text()) for root in (lab.ROOT, work))
        assert copy["cells"] == source["cells"], rel  # the lesson as the kit has it
        assert copy["metadata"] == {**source["metadata"], **lab.kernel_metadata()}, rel
    assert (work / lab.PACKAGE_LINK).resolve() == lab.ROOT / "hitl_kit"

    mine = work / "drills" / "01_classify_email_actions.ipynb"
    mine.write_text(mine.read_text().replace("TODO = None", "TODO = 'mine'"))
    gone = work / "notebooks" / "05_approval_patterns.ipynb"
    gone.unlink()
    assert lab.prepare_work_dir(work) == [gone]  # only what is missing comes back
    assert "TODO = 'mine'" in mine.read_text()


def test_the_committed_notebooks_carry_the_kernels_description_but_its_version():
    """What JupyterLab writes when a kernel starts, so it has (almost) nothing to change when a
    notebook opens; the Python version is per machine, and the launcher's copy carries it."""
    import json

    expected = lab.kernel_metadata()
    del expected["language_info"]["version"]
    for rel in kit_notebooks():
        metadata = json.loads((lab.ROOT / rel).read_text())["metadata"]
        assert {key: metadata.get(key) for key in expected} == expected, rel


def test_check_and_hint_take_a_drill_key_and_read_the_learners_copy(tmp_path, monkeypatch,
                                                                  capsys):
    from hitl_kit.course.checks import get_drill
    from hitl_kit.course.progress import records_progress

    monkeypatch.setenv(lab.WORK_ENV, str(tmp_path / "my-work"))
    drill = get_drill("drill1")
    assert drill.learner_path == drill.drill_path  # no copy yet: the kit's own, not attempted
    assert main(["check", "drill1"]) == 1 and "NOT ATTEMPTED" in capsys.readouterr().out
    lab.prepare_work_dir()
    mine = tmp_path / "my-work" / "drills" / drill.notebook
    assert drill.learner_path == mine
    mine.write_bytes(drill.solution_path.read_bytes())  # solved, in the learner's copy only
    assert main(["check", "drill1"]) == 0
    out = capsys.readouterr().out
    assert "CORRECT" in out and "01_classify_email_actions.ipynb as saved" in out
    assert main(["hint", "drill1"]) == 0 and "No hints needed" in capsys.readouterr().out
    assert records_progress(mine.parent)
    assert not records_progress(tmp_path / "my-work" / "solutions")


def test_a_reader_that_stops_early_gets_no_traceback(root):
    drill = root / "drills" / "01_classify_email_actions.ipynb"
    process = subprocess.Popen([sys.executable, "-m", "hitl_kit", "check", str(drill)],
                               cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head` that has read enough before the report is printed
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert process.returncode == 141


def test_a_missing_drill_is_named_without_extra_quotes(capsys):
    assert main(["hint", "drill9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no drill 'drill9'; drills are: drill1"), err


@pytest.fixture
def run_in(tmp_path, monkeypatch, capsys):
    """Run ``python -m hitl_kit run`` in-process, in an empty directory, with typed answers."""
    monkeypatch.chdir(tmp_path)

    def run(*args, answers="a\n"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
        code = main(["run", *args])
        return code, capsys.readouterr()

    return run


def test_run_starts_from_a_fresh_world_each_time(run_in, tmp_path):
    for _ in range(2):  # the README's example, twice: both times the record is there to delete
        code, out = run_in("Delete the test customer record")
        assert code == 0 and "world: a fresh demo world" in out.out
        assert "Test Customer" in out.out and '{"deleted": {"id": 3' in out.out
    assert list(tmp_path.iterdir()) == [], "run left a file in the current directory"


def test_run_with_a_world_file_keeps_it_and_says_so(run_in, tmp_path):
    world_file = str(tmp_path / "mine.db")
    code, first = run_in("delete customer 4", "--world", world_file)
    assert code == 0 and f"world: {world_file} (new)" in first.out
    code, second = run_in("read customer 4", "--world", world_file)
    assert f"world: {world_file} (as earlier runs left it)" in second.out
    assert "there is no customer with id 4" in second.out


def test_an_unreachable_model_server_is_one_clean_line(run_in, monkeypatch):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    code, out = run_in("read customer 2")
    assert code == 2
    [line] = out.err.strip().splitlines()
    assert line.startswith("error: the chat model failed:") and "OPENAI_BASE_URL" in line


@pytest.mark.parametrize("garbage", [{"foo": "bar"}, {"choices": []},
                                     {"choices": [{"index": 0, "message": None}]}])
def test_a_garbage_model_reply_is_one_clear_line_not_a_bug(run_in, monkeypatch, garbage):
    """A server that answers, but not with a completion: before, '(a bug in hitl_kit)'."""
    from .openai_stub import OpenAIStub

    stub = OpenAIStub(text="hi")
    stub.completion = lambda model, reply: {"id": "x", "object": "chat.completion",
                                            "created": 1, "model": model, **garbage}
    with stub:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        code, out = run_in("read customer 2")
    assert code == 2
    [line] = out.err.strip().splitlines()
    assert line.startswith("error: the chat model failed:") and "OPENAI_BASE_URL" in line
    assert "a bug in hitl_kit" not in line


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys):
    import hitl_kit.__main__ as cli

    def broken(_):
        raise AttributeError("'list' object has no attribute 'get'")

    monkeypatch.setattr(cli, "cmd_hint", broken)
    assert main(["hint", "drill1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: AttributeError:") and "HITL_KIT_DEBUG=1" in line
    monkeypatch.setenv("HITL_KIT_DEBUG", "1")
    with pytest.raises(AttributeError):
        main(["hint", "drill1"])


# -- bad input on the command line: one line saying what is wrong, never "a bug" ----------------

@pytest.fixture
def not_sqlite(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n")
    return path


BAD_INPUT = [  # (arguments, what the message must say)
    (["run", "--world", "{not_sqlite}", "x"], "--world {not_sqlite} is not an SQLite database"),
    (["run", "--world", "{tmp}/no/such/folder/w.db", "x"], "the folder {tmp}/no/such/folder does "
                                                           "not exist"),
    (["run", "--world", "{tmp}", "x"], "--world {tmp} is a folder: give a file"),
    (["run", "--state", "{not_sqlite}", "x"], "--state {not_sqlite} is a file: give a folder"),
    (["run", "--state", "{bad_state}", "x"], "--state {bad_state}/checkpoints.db is not an "
                                             "SQLite database"),
    (["serve", "--minutes", "-1"], "--minutes is how long the app runs: a positive number of "
                                   "minutes, not -1"),
    (["serve", "--minutes", "inf"], "a positive number of minutes, not inf"),
    (["serve", "--checkpoints", "{not_sqlite}"], "--checkpoints {not_sqlite} is not an SQLite"),
    (["serve", "--checkpoints", "{tmp}/none.db"], "--checkpoints {tmp}/none.db: no such file"),
    (["serve", "--world", "{not_sqlite}"], "--world {not_sqlite} is not an SQLite database"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUT, ids=[" ".join(a[:3]) for a, _ in BAD_INPUT])
def test_bad_paths_and_numbers_get_one_line_saying_what_is_wrong(args, says, tmp_path, not_sqlite,
                                                                 capsys):
    bad_state = tmp_path / "state"
    bad_state.mkdir()
    (bad_state / "checkpoints.db").write_text("scribbled over")
    names = {"tmp": tmp_path, "not_sqlite": not_sqlite, "bad_state": bad_state}
    assert main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says.format(**names) in err, err
    assert len(err.strip().splitlines()) == 1
    for leak in ("a bug in hitl_kit", "Errno", "lifetime_s", "DatabaseError"):
        assert leak not in err, err


def test_help_reads_as_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    for command in ("check", "resume", "serve", "run"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown += capsys.readouterr().out
    assert "`" not in shown and "::" not in shown, shown
