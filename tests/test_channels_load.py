"""The web app under concurrent decisions: every request raced by a Slack click and an email
link from 20 clients at once is decided exactly once. (The benchmark runs 1,000 requests and
reports the latency; this is the same run, small enough for the suite.)"""

from benchmarks.channels import decide_under_load


def test_every_request_raced_by_two_channels_is_decided_exactly_once(tmp_path):
    load = decide_under_load(requests=40, clients=20, time_limit_s=120, workdir=tmp_path)
    assert load.errors == []
    assert load.still_pending == 0
    assert len(load.claims_per_request) == 40 and set(load.claims_per_request.values()) == {1}
    assert sum(load.won.values()) == 40 and load.lost == 40  # one winner, one told, per race
    assert load.executed == load.won["slack"]  # approvals ran once each, rejections never
    assert load.exactly_once and len(load.latencies_s) == 80
