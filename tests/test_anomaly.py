import pytest

from hitl_kit.anomaly import BurstDetector


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_alert_only_past_the_limit_within_the_window():
    clock = FakeClock()
    detector = BurstDetector(limit=3, window_seconds=10, clock=clock)
    results = []
    for _ in range(4):
        results.append(detector.observe("update_customer"))
        clock.now += 1
    assert results[:3] == [None, None, None]
    assert results[3].count == 4 and results[3].action == "update_customer"
    assert "update_customer" in str(results[3])
    assert detector.alerts == [results[3]]


def test_old_calls_leave_the_window():
    clock = FakeClock()
    detector = BurstDetector(limit=2, window_seconds=10, clock=clock)
    for _ in range(2):
        detector.observe("update_customer")
    clock.now = 10.0  # both earlier calls are now exactly one window old
    assert detector.observe("update_customer") is None


def test_actions_are_counted_separately():
    detector = BurstDetector(limit=1, window_seconds=60, clock=FakeClock())
    assert detector.observe("a") is None
    assert detector.observe("b") is None
    assert detector.observe("a") is not None


@pytest.mark.parametrize(("limit", "window"), [(0, 10), (3, 0), (3, -1)])
def test_bad_settings_are_refused(limit, window):
    with pytest.raises(ValueError, match="limit"):
        BurstDetector(limit=limit, window_seconds=window)
