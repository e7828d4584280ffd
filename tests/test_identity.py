"""Who is who (hitl_kit.identity), and the channels that rely on it.

A spelling renders like a name when, character for character, TR39's confusables data draws it
alike: as typed, once both are written in small letters, or once both are written in capitals.
The properties build such spellings from random names (Latin, Cyrillic, Greek, full-width and
mathematical letters, small capitals, invisible characters) and check that none is judged another
person, that no look-alike of the kit's own names is accepted, and that every invisible character
Unicode lists is refused. The invisible characters come from the regex module's Unicode tables, not
from ICU's, so the two sources check each other.
"""

import string

import icu
import pytest
import regex
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hitl_kit.approvers import Approvers, NotAllowed
from hitl_kit.channels import ApproverDirectory, Person, check_not_requester, decide, item_ref
from hitl_kit.identity import (
    NameRefused,
    check_name,
    is_reserved,
    one_of,
    person_key,
    same_person,
)
from hitl_kit.render import reveal
from hitl_kit.requests import ApprovalError
from hitl_kit.vocabulary import Approver, Channel

from .channel_kit import make_setup

_SKELETON = icu.SpoofChecker()
_NFKC = icu.Normalizer2.getNFKCInstance()
_FOLD = icu.Normalizer2.getNFKCCasefoldInstance()


def skeleton(text: str) -> str:
    return _SKELETON.getSkeleton(0, text)


# Latin with IPA and phonetic small capitals, Greek, Cyrillic, full-width forms, mathematical
# letters: where look-alikes of Latin letters live.
POOL = [chr(c) for low, high in [(0x41, 0x24F), (0x250, 0x2AF), (0x370, 0x3FF), (0x400, 0x52F),
                                 (0x1D00, 0x1DBF), (0xFF01, 0xFF5E), (0x1D400, 0x1D7FF)]
        for c in range(low, high + 1) if chr(c).isalnum()]
LETTERS = string.ascii_letters + string.digits


def lookalikes(view) -> dict[str, list[str]]:
    """For each ASCII letter and digit, the characters of POOL that, seen through ``view`` (as
    typed, in small letters, in capitals), TR39 draws like the letter seen the same way."""
    drawn = {}
    for char in POOL:
        drawn.setdefault(skeleton(view(char)), []).append(char)
    return {letter: [c for c in drawn.get(skeleton(view(letter)), []) if c != letter]
            for letter in LETTERS}


AS_TYPED = lookalikes(_NFKC.normalize)
IN_SMALL_LETTERS = lookalikes(_FOLD.normalize)
IN_CAPITALS = lookalikes(lambda c: _NFKC.normalize(c).upper())
VIEWS = {"as typed": (lambda name: name, AS_TYPED),
         "in small letters": (str.lower, IN_SMALL_LETTERS),
         "in capitals": (str.upper, IN_CAPITALS)}
# Every default-ignorable and format character Unicode lists (regex's tables, not ICU's).
INVISIBLE = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF
             and regex.match(r"[\p{Default_Ignorable_Code_Point}\p{Cf}]", chr(c))]
ORDINARY = ["ana", "bo", "cy", "rita", "anna", "di", "eve", "tom", "tim", "jan", "max", "nell",
            "neil", "ella", "elia", "lia", "ila", "ivan", "olga", "Ana Lopez", "José", "Zoë",
            "O'Brien", "Рита", "Ελένη", "山田 太郎", "Tanaka 太郎", "김민준"]
# The attacks issue 20 measured: each renders like "rita" and passed somewhere.
ATTACKS = ["RITA", " Rita ", "ＲＩＴＡ", "rit\u0430", "r\u0456ta", "rit\u03b1", "r\u026ata",
           "\u0280ita", "ri\u200bta", "ri\u034fta", "rita\ufe0f", "\u3164rita", "ri\u2060ta",
           "rita\U000e0041", "ri\u180bta", "r\u00adita", "\U0001d42bita", "ri\ufeffta"]


@st.composite
def spelt_like(draw, name: str, view: str = "as typed") -> str:
    """``name`` seen through ``view``, with look-alikes swapped in and invisible characters
    slipped between its letters."""
    shown, alike = VIEWS[view]
    spelt = []
    for letter in shown(name):
        choices = alike.get(letter, [])
        spelt.append(draw(st.sampled_from(choices)) if choices and draw(st.booleans())
                     else letter)
        if draw(st.integers(0, 3)) == 0:
            spelt.append(draw(st.sampled_from(INVISIBLE)))
    return "".join(spelt)


cased = st.builds(lambda text, caps: "".join(c.upper() if up else c for c, up in zip(
    text, caps, strict=False)), st.text(string.ascii_lowercase, min_size=2, max_size=10),
    st.lists(st.booleans(), min_size=10, max_size=10))


# -- properties -----------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.data(), cased, st.sampled_from(sorted(VIEWS)))
def test_no_spelling_that_renders_like_the_requester_is_another_person(data, requester, view):
    spelling = data.draw(spelt_like(requester, view))
    assert same_person(spelling, requester) and same_person(requester, spelling)
    with pytest.raises(ApprovalError, match="someone else must decide"):
        check_not_requester(spelling, requester)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.data(), st.text(string.ascii_lowercase, min_size=2, max_size=10))
def test_spellings_of_one_person_in_small_letters_share_one_key(data, name):
    spelling = data.draw(spelt_like(name, "in small letters"))
    assert person_key(spelling) == person_key(name) == person_key(name.upper())


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.data(), cased, st.sampled_from(sorted(VIEWS)))
def test_two_spellings_of_one_person_are_never_two_people(data, name, view):
    spelling = data.draw(spelt_like(name, view))
    assume(spelling != name)  # a table's two keys
    with pytest.raises(ValueError, match="listed twice|invisible|mixes scripts"):
        Approvers(people={name: ["oncall"], spelling: ["oncall"]})
    with pytest.raises(ValueError, match="listed twice|invisible|mixes scripts"):
        ApproverDirectory([Person(name), Person(spelling)])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.data(), st.sampled_from([str(own) for own in Approver]),
       st.sampled_from(sorted(VIEWS)))
def test_no_lookalike_of_a_reserved_name_is_accepted(data, own, view):
    spelling = data.draw(spelt_like(own, view))
    try:
        accepted = check_name(spelling)
    except NameRefused:
        return
    assert is_reserved(accepted), spelling


# Letters drawn from several scripts at once, with full-width forms, combining marks and invisible
# characters among them.
MIXES = st.text(st.sampled_from(
    [*"abcdeiopxyzRITA", *"аеорсухіјАВЕКМНОРСТХ", *"αειοκνρτΑΒΕΗΙΚΜΝΟΡΤΧ", *"ＲＩＴＡｒｉｔａ",
     "\u0301", "\u0308", "\u0327", "\u200b", "\u034f", "\ufe0f", "\u3164", "\u2060", " "]),
    min_size=1, max_size=12)
SCRIPTS = {"Latin", "Cyrillic", "Greek"}


@settings(max_examples=400, deadline=None, derandomize=True)
@given(MIXES)
def test_an_accepted_name_is_visible_and_written_in_one_script(name):
    try:
        accepted = check_name(name)
    except NameRefused:
        return
    assert not any(regex.match(r"[\p{Default_Ignorable_Code_Point}\p{Cf}]", c) for c in accepted)
    written_in = {script for script in SCRIPTS for c in accepted
                  if c.isalpha() and regex.match(rf"\p{{Script_Extensions={script}}}", c)}
    assert len(written_in) <= 1, (accepted, written_in)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(MIXES, st.text(max_size=30)))
def test_every_name_gets_a_key_and_comparing_is_symmetric(name):
    assert isinstance(person_key(name), str) and same_person(name, name)
    assert same_person(name, "rita") == same_person("rita", name)
    assert not same_person(name, None) and not same_person(None, name)


def test_a_key_is_total():
    for value in ["", "\ud800", "a\udfffb", None, 3, b"rita", ["rita"], "\x00" * 100]:
        assert isinstance(person_key(value), str)
    assert person_key("\ud800rita") == "rita"


def test_distinct_ordinary_names_stay_distinct():
    for at, name in enumerate(ORDINARY):
        assert check_name(name) == name
        others = [other for other in ORDINARY[at + 1:] if same_person(name, other)]
        assert not others, f"{name!r} is taken for {others}"


def test_every_invisible_character_is_refused_dropped_and_shown():
    missed = {"accepted in a name": [], "kept in the key": [], "not shown": []}
    for char in INVISIBLE:
        code = f"U+{ord(char):04X}"
        try:
            check_name(f"ri{char}ta")
            missed["accepted in a name"].append(code)
        except NameRefused as refused:
            assert code in str(refused)
        if person_key(f"ri{char}ta") != "rita":
            missed["kept in the key"].append(code)
        shown, notes = reveal(f"ri{char}ta")
        if char in shown or code not in " ".join(notes):
            missed["not shown"].append(code)
    assert len(INVISIBLE) > 4000 and missed == {key: [] for key in missed}


def test_every_hidden_kind_is_refused_in_a_name():
    for char in ["\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u00a0", "\u3000",
                 "\ue000", "\U000f0000", "\U0010fffd", "\u0378", "\U000e01f0", "\ud800",
                 "\u2800", "\u202e", "\u2066"]:
        with pytest.raises(NameRefused, match="invisible or control"):
            check_name(f"ri{char}ta")
    with pytest.raises(NameRefused, match="repeats the mark"):
        check_name("Jose\u0301\u0301")


@pytest.mark.parametrize("name", ["rit\u0430", "\u03c1ita", "\u0420\u0438ta", "r\u0456t\u03b1",
                                  "Rita \u0420\u0438\u0442\u0430", "ana\u0661", "ab\u0800"])
def test_a_name_mixing_scripts_is_refused_naming_the_odd_letters(name):
    with pytest.raises(NameRefused, match="mixes scripts"):
        check_name(name)


def test_names_that_only_look_alike_in_one_case_are_still_one_person():
    assert same_person("Tom", "\u0422\u041e\u041c")  # ТОМ in Cyrillic capitals
    assert same_person("PITA", "\u03a1\u0399\u03a4\u0391")  # ΡΙΤΑ in Greek capitals
    assert same_person("Ian", "lan") and same_person("bob", "b0b") and same_person("mary", "rnary")
    assert not same_person("Ian", "Lan") and not same_person("rita", "rlta")
    with pytest.raises(NameRefused, match="could be any of 'ian', 'lan'"):
        one_of("Ian", ["ian", "lan", "bo"])
    assert one_of("\u0430na", ["ana", "bo"]) == "ana" and one_of("cy", ["ana", "bo"]) is None


# -- the attacks, through the channels ----------------------------------------------------------

def test_the_requester_cannot_approve_through_a_channel_in_any_spelling(tmp_path):
    setup = make_setup(tmp_path, {"t": "delete customer 4"}, requester="rita")
    ref = item_ref(setup.item("t"))
    for spelling in ATTACKS:
        [answer] = decide(setup.inbox, [ref], "approve", spelling, "", Channel.DASHBOARD)
        assert not answer.ok and "someone else must decide" in answer.message, spelling
    assert setup.executed() == 0
    [answer] = decide(setup.inbox, [ref], "approve", "bo", "", Channel.DASHBOARD)
    assert answer.ok and setup.executed() == 1


@pytest.mark.parametrize("spelling", ATTACKS)
def test_a_directory_knows_each_spelling_as_the_one_person(spelling):
    people = ApproverDirectory([Person("ana"), Person("bo"), Person("rita")])
    assert people.find(spelling).name == "rita" and people.require(spelling).name == "rita"
    with pytest.raises(ValueError, match="listed twice|invisible|mixes scripts"):
        ApproverDirectory([Person("rita"), Person(spelling)])


@pytest.mark.parametrize("spelling", ATTACKS)
def test_approver_roles_follow_the_person_not_the_spelling(spelling):
    approvers = Approvers(people={"rita": ["finance"], "bo": ["oncall"]},
                          may_decide={"deploy_to_prod": ["oncall"]})
    deploy = {"tool": "deploy_to_prod", "reversibility": "irreversible_high"}
    with pytest.raises(NotAllowed, match="needs the role oncall"):
        approvers.role_for(spelling, deploy)
    with pytest.raises(ValueError, match="listed twice|invisible|mixes scripts"):
        Approvers(people={"rita": ["oncall"], spelling: ["oncall"]})


def test_a_name_matching_two_listed_people_decides_nothing():
    approvers = Approvers(people={"ian": ["oncall"], "lan": ["finance"]})
    with pytest.raises(NotAllowed, match="could be any of"):
        approvers.role_for("Ian", {"tool": "deploy_to_prod"})
    people = ApproverDirectory([Person("ian"), Person("lan")])
    assert people.find("Ian") is None
    with pytest.raises(ApprovalError, match="could be any of"):
        people.require("Ian")


@pytest.mark.parametrize("spelling", ["\u0455ystem", "SYSTEM", "ＳＹＳＴＥＭ", "sys\u200btem",
                                      "\u0405\u0423\u0405\u0422\u0415\u041c", "\u0430uto",
                                      "aut\u03bf", "AUTO\ufe0f", "\u0430\u03c5\u0442\u043e"])
def test_the_kits_own_names_are_refused_in_any_spelling(spelling):
    with pytest.raises(ValueError, match="keeps for itself|invisible|mixes scripts"):
        ApproverDirectory([Person(spelling)])
    with pytest.raises(ValueError, match="keeps for itself|invisible|mixes scripts"):
        Approvers(people={spelling: ["oncall"]})


@pytest.mark.parametrize("spelling", ATTACKS)
def test_what_sets_a_spelling_apart_is_shown_to_the_approver(spelling):
    """Every character that is not plain ASCII is marked, but for the small capitals: Latin
    letters in a Latin word, which the name comparison sees through anyway."""
    shown, notes = reveal(f"approved by {spelling}")
    for char in [c for c in spelling if not c.isascii() and c not in "\u026a\u0280"]:
        assert char not in shown and f"U+{ord(char):04X}" in " ".join(notes), char
