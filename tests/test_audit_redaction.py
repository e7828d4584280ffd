"""Redaction (hitl_kit.redaction): a corpus of secret shapes and innocent look-alikes, in text and
under keys, through sanitize and through the trail; and why it is linear, shown without a clock.

The 1 MB-in-under-50-ms figure is measured by benchmarks/redaction.py, not asserted here: tests
never time themselves. What a test can check is the structure that makes the time linear."""

from __future__ import annotations

import json
import re
from pathlib import Path
from re import _parser as sre_parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitl_kit import redaction
from hitl_kit.audit import AuditTrail
from hitl_kit.redaction import (
    MAX_DEPTH,
    MAX_FINDINGS,
    PATTERNS,
    clean_text,
    escape_controls,
    find_secrets,
    is_secret_name,
    redaction_marker,
    sanitize,
)

from .test_audit import proposal

CORPUS = json.loads((Path(__file__).parent / "data" / "secrets_corpus.json").read_text())
SECRETS = CORPUS["secrets"]
INNOCENT = CORPUS["innocent"]
MARKER = re.compile(r"\[REDACTED sha256:[0-9a-f]{12}\]")


def ids(cases):
    return [case["why"] for case in cases]


# --- the corpus -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SECRETS, ids=ids(SECRETS))
def test_each_secret_shape_is_redacted(case):
    out = clean_text(case["text"])
    assert case["secret"] not in out, out
    assert MARKER.search(out), out


@pytest.mark.parametrize("case", INNOCENT, ids=ids(INNOCENT))
def test_innocent_look_alikes_pass_unchanged(case):
    assert clean_text(case["text"]) == escape_controls(case["text"])


@pytest.mark.parametrize("key", CORPUS["secret_keys"])
def test_values_under_secret_keys_are_redacted_whole(key):
    for value in ("plain words", 4921, ["a", "list"], {"nested": True}):
        assert sanitize({key: value}) == {key: redaction_marker(value)}


@pytest.mark.parametrize("key", CORPUS["innocent_keys"])
def test_values_under_other_keys_are_kept(key):
    assert not is_secret_name(key)
    assert sanitize({key: "plain words"}) == {key: "plain words"}


def test_innocent_text_is_stored_as_it_is(tmp_path):
    with AuditTrail(tmp_path / "audit.db", durable=False) as trail:
        for n, case in enumerate(INNOCENT):
            row = trail.append(proposal(n, parameters={"text": case["text"]}))
            assert json.loads(row["parameters"])["text"] == escape_controls(case["text"])


def test_the_marker_is_the_short_hash_of_the_secret():
    out = clean_text("login failed; password: hunter2")
    assert out == f"login failed; password: {redaction_marker('hunter2')}"
    assert redaction_marker("hunter2") == "[REDACTED sha256:f52fbd32b2b3]"


def test_every_corpus_secret_stays_out_of_the_database_file(tmp_path):
    """Through the trail: in parameters, in details and in the reason; checked on the bytes."""
    db = tmp_path / "audit.db"
    with AuditTrail(db, durable=False) as trail:
        for n, case in enumerate(SECRETS):
            trail.append(proposal(n, parameters={"command": case["text"]},
                                  details={"quote": case["text"]}, reason=case["text"]))
        assert trail.verify().ok
    data = db.read_bytes()  # closed: the WAL is checkpointed into the file
    # hashes, markers and timestamps are hex and digits: a short secret ("4921") can be in them
    data = re.sub(rb"[0-9a-f]{64}|sha256:[0-9a-f]{12}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+\+00:00",
                  b"", data)
    leaked = [case["why"] for case in SECRETS if case["secret"].encode() in data]
    assert leaked == []


# --- behaviour in general -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300)
       | st.lists(st.sampled_from([case["text"] for case in SECRETS + INNOCENT]
                                  + [" ", "\n", "=", ": ", "'", "\"", "?", "&"]),
                  max_size=6).map("".join))
def test_cleaning_is_idempotent_and_leaves_no_control_characters(text):
    once = clean_text(text)
    assert clean_text(once) == once
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", once)


@pytest.mark.parametrize("case", SECRETS, ids=ids(SECRETS))
def test_the_gate_lets_each_secret_through_even_alone(case):
    from hitl_kit.redaction import GATE, _candidates

    for text in (case["text"], case["secret"], case["secret"] + " " + case["secret"]):
        if _candidates(text):
            assert GATE.search(text), text


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([case["text"] for case in SECRETS + INNOCENT]
                                + [case["secret"] for case in SECRETS]
                                + ["Bearer ", "://", ":", "=", "-u ", "x", "A", "J", "_"]),
                max_size=5).map("".join) | st.text(max_size=80))
def test_the_gate_lets_through_every_string_with_a_candidate(text):
    """Short strings that GATE turns away skip the scans: so each must have no candidate."""
    from hitl_kit.redaction import GATE, _candidates

    if GATE.search(text) is None:
        assert _candidates(text) == []


def test_a_string_with_too_many_candidates_is_redacted_whole():
    text = "password=x " * (MAX_FINDINGS + 1)
    assert find_secrets(text) is None
    assert clean_text(text) == redaction_marker(text)


@pytest.mark.parametrize("repeat", [1, 5_000])  # few: one call each; many: a pass per character
@pytest.mark.parametrize("extra", ["", "".join(map(chr, range(0x80, 0x9f)))])  # > 32 distinct
def test_escaping_is_the_same_however_many_there_are(repeat, extra):
    unit = "a\nb\r\tc\x01\x7f\x85\u061c\u200b\u2028\u202e\u2066\ufeff\ud800 é" + extra
    expected = ("a\\nb\\r\\tc\\u0001\\u007f\\u0085\\u061c\\u200b\\u2028\\u202e\\u2066"
                "\\ufeff\\ud800 é" + "".join(f"\\u{ord(c):04x}" for c in extra))
    assert escape_controls(unit * repeat) == expected * repeat


def test_bidi_and_invisible_characters_are_made_visible():
    assert clean_text("rita\u200b") == "rita\\u200b"
    assert clean_text("invoice\u202efdp.exe") == "invoice\\u202efdp.exe"


@pytest.mark.parametrize("build", [
    lambda leaf: {"a": leaf}, lambda leaf: [leaf], lambda leaf: {"password": leaf},
])
def test_depth_is_limited_with_a_value_error(build):
    value = "leaf"
    for _ in range(MAX_DEPTH + 1):
        value = build(value)
    with pytest.raises(ValueError, match="levels deep"):
        sanitize({"payload": value})
    shallow = "leaf"
    for _ in range(MAX_DEPTH - 2):
        shallow = build(shallow)
    sanitize({"payload": shallow})  # just inside the limit: fine


def test_keys_that_become_equal_once_cleaned_are_refused():
    with pytest.raises(ValueError, match="rename one"):
        sanitize({"a\n": 1, "a\\n": 2})


# --- linear by construction -----------------------------------------------------------------------


def alternatives(pattern: re.Pattern):
    tree = sre_parse.parse(pattern.pattern, pattern.flags)
    (op, av), = tree.data
    assert op is sre_parse.BRANCH
    return av[1]


@pytest.mark.parametrize("pattern", PATTERNS, ids=["backward", "forward"])
def test_each_scan_pattern_has_a_bounded_width(pattern):
    """No alternative can match more than a fixed number of characters at one position, so a
    failed attempt costs a bounded number of steps wherever it starts (the old pattern had
    unbounded runs and went quadratic on long letters-only or hex strings)."""
    low, high = sre_parse.parse(pattern.pattern, pattern.flags).getwidth()
    assert high <= 3_000, high


def first_characters(pattern: re.Pattern) -> set[str]:
    """The character each alternative starts with (it must start with a literal)."""
    firsts = set()
    for branch in alternatives(pattern):
        op, av = branch[0]
        assert op is sre_parse.LITERAL, branch
        firsts.add(chr(av))
    return firsts


def test_each_scan_starts_at_a_few_characters_the_other_does_not_stop_at():
    """Every alternative starts with a literal, so the engine skips every other character at C
    speed; and text made of one repeated character costs one pass's work at most (the backward
    pass reads the lower-cased text)."""
    backward, forward = PATTERNS
    back, fore = first_characters(backward), first_characters(forward)
    assert len(back) <= 8 and len(fore) <= 8
    assert not back & (fore | {c.lower() for c in fore})


class CountingPattern:
    """Wraps a compiled pattern and adds up how many characters its matches read."""

    def __init__(self, pattern, counter):
        self.pattern, self.counter = pattern, counter

    def match(self, text, pos=0):
        found = self.pattern.match(text, pos)
        self.counter.append(found.end() - pos)
        return found


ADVERSARIAL = {
    "letters": "a" * 20_000,
    "hex": "0123456789abcdef" * 1_250,
    "token runs": ("sk-" + "a1" * 20 + "-") * 400,
    "separators": "password=" * 2_000,
    "values": "password: " + "x" * 20_000,
    "unterminated quotes": "token: '" * 2_000,
    "bearer runs": "Bearer " + "A1b2" * 5_000,
    "pem without end": "-----BEGIN RSA PRIVATE KEY-----" * 500,
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL)
def test_extensions_never_read_a_character_twice(monkeypatch, text):
    """Besides the two bounded scans, the only unbounded reads are the runs that extend a
    finding (a token, a value). Counted here: together they read at most the whole text once."""
    read = []
    for name in ("_TOKEN", "_VALUE", "_URL_VALUE"):
        monkeypatch.setattr(redaction, name, CountingPattern(getattr(redaction, name), read))
    find_secrets(text)
    assert sum(read) <= len(text)


def test_the_candidate_count_is_capped():
    """The Python work per string is bounded by MAX_FINDINGS candidates."""
    assert find_secrets("pw:" * (10 * MAX_FINDINGS)) is None
    assert find_secrets("AKIAIOSFODNN7EXAMPLE " * (10 * MAX_FINDINGS)) is None
