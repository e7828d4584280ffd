"""Progress: recorded from real self-checks, ticked by the learner only where it should be."""

import json

import pytest

from hitl_kit.course.checks import all_drills, check_notebook, get_drill
from hitl_kit.course.progress import CHECKLIST, Progress, records_progress
from hitl_kit.course.review import QUESTIONS, ChecklistPanel, QuizCard, WeakAreaLog
from hitl_kit.course.selfcheck import CORRECT, INCORRECT, ROOT

from .conftest import copy_of, with_cell_replaced


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv("HITL_KIT_PROGRESS", str(path))
    return path


def drill1_copy(tmp_path, solved: bool):
    """A learner's copy of drill 1, outside solutions/, solved or with one wrong row."""
    source = get_drill("drill1").solution_path
    copy = with_cell_replaced(source, tmp_path, '"archive_thread": ("fully_reversible"',
                              '"archive_thread": ("fully_reversible"' if solved
                              else '"archive_thread": ("irreversible_high"')
    return copy


def test_a_drill_going_from_failing_to_passing_updates_progress(progress_file, tmp_path):
    check_notebook(drill1_copy(tmp_path, solved=False))
    assert Progress().drill_status("drill1") == INCORRECT
    assert not dict((i, d) for i, d, _ in Progress().checklist())[
        "Can classify actions by reversibility"]
    check_notebook(drill1_copy(tmp_path, solved=True))
    saved = json.loads(progress_file.read_text())["drills"]["drill1"]
    assert saved["status"] == CORRECT and saved["passed"] == saved["checks"] == len(
        get_drill("drill1").checks)
    assert dict((i, d) for i, d, _ in Progress().checklist())[
        "Can classify actions by reversibility"]


def test_checking_a_solution_records_nothing(progress_file):
    check_notebook(get_drill("drill1").solution_path)
    assert not progress_file.exists()
    assert not records_progress(ROOT / "solutions")
    assert records_progress(ROOT / "drills")


def test_pristine_drill_records_not_attempted(progress_file, tmp_path):
    check_notebook(copy_of(get_drill("drill1").drill_path, tmp_path))
    assert Progress().drill_status("drill1") == "not attempted"


def test_two_correct_drills_tick_the_practice_item(progress_file):
    progress = Progress()
    item = "Completed at least 2 practice drills"
    for key in ("drill1", "drill2"):
        assert not dict((i, d) for i, d, _ in progress.checklist())[item]
        report = check_notebook(get_drill(key).solution_path)
        progress.record(report)
    assert dict((i, d) for i, d, _ in progress.checklist())[item]


def test_learner_ticks_only_their_own_items(progress_file):
    progress = Progress()
    progress.tick("Know the difference between sync and async approval gates")
    assert Progress().data["ticked"] == {
        "Know the difference between sync and async approval gates": True}
    with pytest.raises(ValueError, match="ticks itself"):
        progress.tick("Implemented interrupt() in a LangGraph graph")
    with pytest.raises(ValueError, match="no checklist item"):
        progress.tick("Did my best")


def test_weak_areas_are_logged_and_blank_ones_refused(progress_file):
    progress = Progress()
    with pytest.raises(ValueError, match="write what felt weak"):
        progress.add_weak_area("   ")
    assert not progress_file.exists()
    progress.add_weak_area("soft gates vs hard gates")
    assert [w["text"] for w in Progress().data["weak_areas"]] == ["soft gates vs hard gates"]


def test_a_damaged_file_is_kept_aside_not_lost(progress_file):
    progress_file.write_text("{not json")
    progress = Progress()
    assert "unreadable" in progress.warning
    kept = list(progress_file.parent.glob("progress.damaged-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == "{not json"
    progress.add_weak_area("x")
    assert json.loads(progress_file.read_text())["weak_areas"][0]["text"] == "x"


def test_every_check_has_a_hint_and_every_drill_a_solution(capsys):
    for drill in all_drills():
        assert all(len(c.hint) > 20 for c in drill.checks), drill.key
        drill.solution()
        shown = capsys.readouterr().out
        assert len(shown) > 100 and "TODO" not in shown and "NotImplementedError" not in shown


def test_quiz_reveal_lists_the_key_points_the_answer_touches():
    card = QuizCard(1, QUESTIONS[0])
    card.answer.value = "anything irreversible"
    card.reveal.click()
    assert "1 of 5" in card.shown.value and QUESTIONS[0].model_answer[:40] in card.shown.value
    card.answer.value = "<b>compliance</b> and money"
    card.reveal.click()
    assert "2 of 5" in card.shown.value


def test_checklist_panel_boxes(progress_file):
    panel = ChecklistPanel()
    assert len(panel.boxes) == len(CHECKLIST)
    drill_box = panel.boxes["Implemented interrupt() in a LangGraph graph"]
    assert drill_box.disabled and not drill_box.value
    learner_box = panel.boxes["Know the difference between sync and async approval gates"]
    learner_box.value = True
    assert Progress().data["ticked"]["Know the difference between sync and async approval gates"]


def test_weak_area_widget_saves_and_refreshes_the_checklist(progress_file):
    panel = ChecklistPanel()
    log = WeakAreaLog(progress=panel.progress, on_saved=panel.refresh)
    log.save.click()
    assert "write what felt weak" in log.status.value
    log.text.value = "<script>x</script> timeouts"
    log.save.click()
    assert "&lt;script&gt;" in log.status.value and "<script>" not in log.status.value
    assert panel.boxes["Logged one weak area for revision"].value
