"""Who is who: the one rule for the names people go by.

A name decides who may approve, who asked for an action (and so may not approve it), which names
are the kit's own (``system``, ``auto``) and whether two approvals came from two people. This
module is the only place that rule is written; every channel, table and page uses it.

* ``check_name``: a name someone may go by, or ``NameRefused`` saying what is wrong: empty, too
  long, holding a character a reader cannot see or the data below does not know, or mixing
  scripts (a Cyrillic ``а`` in a Latin name).
* ``same_person``: two names are one person when they render alike as typed, once both are
  written in small letters, or once both are written in capitals, hidden characters and
  full-width forms aside. ``person_key`` is the comparable form in small letters; ``one_of``
  finds a person among known names.
* ``is_reserved``: the kit's own names, however they are spelt.
* ``skeleton``: TR39's skeleton of a text, the form the three views are compared in.
* ``hidden_characters`` and ``mixed_script_letters``: what a reader cannot see, or cannot tell
  apart. The renderer marks exactly these; ``check_name`` refuses names holding any.

Limits, first:

* "Render alike" means Unicode's TR39 confusables as ICU, its reference implementation, ships
  them, and scripts are ICU's Script_Extensions: both are read from ``identity_data.json``, made
  from ICU by ``python -m hitl_kit.identity_data`` (see ``hitl_kit.identity_data``), not kept by
  hand. It carries ICU 72.1, Unicode 15.0, and is as current as its last regeneration: regenerate
  it when Unicode or ICU updates; with PyICU installed, ``tests/test_identity.py`` checks every
  code point against ICU. Normalization is Python's (``unicodedata``, its own Unicode version)
  and the other character classes (invisible, control, unassigned...) are the ``regex``
  module's. A name holding a character the data or this Python's Unicode does not know yet is
  refused; nothing is kept by hand but U+2800, a Braille blank that is a symbol yet draws nothing.
  TR39 draws ``rn`` as ``m``, ``0`` as ``O`` and a capital ``I`` as ``l``: ``rnary`` is ``mary``,
  ``b0b`` is ``bob``, ``Ian`` is ``lan``, ``torn`` is ``tom``. Letters one font happens to draw
  alike, and TR39 does not list, are two people.
* Three views, not one key: a capital ``I`` is ``l`` to the eye and ``i`` in small letters, so
  one key holding both would make ``Nell`` and ``Neil`` one person, and merging every case pair
  with every look-alike joins whole groups of Latin letters (measured with ICU 72: r t u y z,
  c o 0 6, e 3 7, f s 5, i l 1, n v). ``same_person`` is therefore not transitive (``Ian`` is
  ``ian`` and is ``lan``, two people); ``one_of`` refuses a name that could be two listed people.
* Not caught, by that choice: a look-alike that needs the eye's view and a change of case at
  once (``Iia`` reads as ``lia``, the small-letter form of ``Lia``, yet is not ``Lia``).
* Scripts may mix only as TR39's "highly restrictive" level allows: one script, or Latin with
  Han and Hiragana/Katakana, Bopomofo or Hangul. Digits, spaces and punctuation go with any.
* Cost, measured by ``benchmarks/identity.py`` against NFKC and case folding alone: a comparison
  of new names 15 to 20 times that (as through PyICU before), of names seen before about the same
  (the last 8,192 names are cached), ``check_name`` about 6 times; the data is read once, at the
  first comparison (a few milliseconds).

    >>> [same_person("rita", spelling) for spelling in
    ...  ["RITA", "ＲＩＴＡ", "rit\\u0430", "r\\u026ata", "ri\\u200bta", "Rita "]]
    [True, True, True, True, True, True]
    >>> same_person("Tom", "\\u0422\\u041e\\u041c"), same_person("ana", "anna")  # ТОМ in Cyrillic
    (True, False)
    >>> is_reserved("\\u0455ystem"), is_reserved("SYSTEM"), is_reserved("ana")  # Cyrillic ѕ
    (True, True, False)
    >>> check_name("  Ana Lopez "), check_name("Рита"), check_name("Tanaka 太郎")
    ('Ana Lopez', 'Рита', 'Tanaka 太郎')
    >>> check_name("ri\\u200bta")
    Traceback (most recent call last):
    ...
    hitl_kit.identity.NameRefused: approver name 'ri\\u200bta' holds invisible ...(U+200B ZERO ...
    >>> check_name("rit\\u0430", "requester")
    Traceback (most recent call last):
    ...
    hitl_kit.identity.NameRefused: requester name 'ritа' mixes scripts (U+0430 CYRILLIC ...
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

import regex

from hitl_kit import identity_data
from hitl_kit.vocabulary import Approver

MAX_NAME_CHARS = 64

_COMBINING = regex.compile(r"\p{Mn}")
_PLAIN = re.compile(r"[\x20-\x7e]*")  # printable ASCII: nothing hidden, one script
_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")
# Why a reader cannot see a character for what it is; the first class holding it answers.
_HIDDEN = [(regex.compile(pattern), why) for pattern, why in [
    (r"\p{Bidi_Control}", "bidi control: reorders the text around it"),
    (r"\p{Cc}", "control character"),
    (r"[\p{Default_Ignorable_Code_Point}\p{Cf}\u2800]", "invisible"),
    (r"\p{Cn}", "unassigned: no font draws it"),
    (r"\p{Co}", "private use: each font draws it its own way"),
    (r"[\p{Zl}\p{Zp}]", "line or paragraph separator"),
    (r"[^\P{Zs}\x20]", "a space that is not a plain space"),
]]
_ANY_HIDDEN = regex.compile("|".join(chars.pattern for chars, _ in _HIDDEN) + r"|\p{Cs}")
# TR39's "highly restrictive": Latin may join Han with Japanese kana, with Bopomofo or with Hangul.
_LATIN = "Latn"
_WITH_HAN = [frozenset(group) for group in
             (("Hani", "Hira", "Kana"), ("Hani", "Bopo"), ("Hani", "Hang"))]
_UNKNOWN_SCRIPT = frozenset({"Zzzz"})


class NameRefused(ValueError):
    """A name nobody may go by here; the message says what is wrong with it and what to do."""


# -- what a reader cannot see -------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def hidden_reason(char: str) -> str | None:
    """Why a reader would not see ``char`` for what it is, or None: an invisible (default-ignorable
    or format) character, a control or bidi control, an unassigned, private-use or surrogate code
    point, a line separator, or a space that is not a plain one."""
    if "\ud800" <= char <= "\udfff":
        return "surrogate: half of a character"
    return next((why for chars, why in _HIDDEN if chars.match(char)), None)


def hidden_characters(text: str) -> list[tuple[int, str]]:
    """(position, why) for each character of ``text`` a reader would not see: those with a
    ``hidden_reason``, and a combining mark repeating the one before it (it is drawn once).

    >>> hidden_characters("ri\\u200bta\\u202e")
    [(2, 'invisible'), (5, 'bidi control: reorders the text around it')]
    """
    found = []
    if not _ANY_HIDDEN.search(text) and not _COMBINING.search(text):
        return found
    for match in _NOT_PLAIN.finditer(text):
        at, char = match.start(), match.group()
        why = hidden_reason(char)
        if why is None and at and _COMBINING.match(char) and \
                unicodedata.normalize("NFD", text[at - 1]).endswith(char):
            why = "repeats the mark before it, which is drawn once"
        if why is not None:
            found.append((at, why))
    return found


@functools.lru_cache(maxsize=4096)
def _scripts(char: str) -> frozenset[str]:
    """The scripts ``char`` is written in (Script_Extensions, as short codes), none for digits,
    marks and spaces; Unknown for a code point the data does not know."""
    found = identity_data.table().scripts(char)
    return _UNKNOWN_SCRIPT if found is None else found


def _script_name(code: str) -> str:
    return identity_data.table().script_names.get(code, "Unknown").replace("_", " ")


def _mixes_scripts(text: str) -> bool:
    """True when ``text`` mixes scripts beyond TR39's "highly restrictive" level (section 5.2):
    its letters share no script, and it is not Latin with Han and Japanese, Chinese or Korean."""
    if _PLAIN.fullmatch(text):
        return False
    written_in = [found for found in map(_scripts, text) if found]
    if not written_in or frozenset.intersection(*written_in):
        return False
    return not any(all(_LATIN in found or found & with_han for found in written_in)
                   for with_han in _WITH_HAN)


def mixed_script_letters(text: str) -> list[tuple[int, str]]:
    """(position, why) for each letter of ``text`` that should not be there when it mixes scripts
    beyond TR39's "highly restrictive" level: the letters outside the script most of it is
    written in. Empty when ``text`` passes (one script, or Latin with Han and Japanese, Chinese or
    Korean).

    >>> mixed_script_letters("p\\u0430yp\\u0430l")
    [(1, 'looks like a Latin letter, inside a Latin word'), (4, 'looks like a Latin letter, inside a Latin word')]
    >>> mixed_script_letters("Привет"), mixed_script_letters("東京で会議")
    ([], [])
    """  # noqa: E501
    if not _mixes_scripts(text):
        return []
    scripts = [_scripts(char) for char in text]
    counts = Counter(code for found in scripts for code in found)
    main = max(counts, key=lambda code: (counts[code], code == _LATIN))
    return [(at, _foreign(text[at], main)) for at, found in enumerate(scripts)
            if found and main not in found]


def _foreign(char: str, main: str) -> str:
    mine = " or ".join(sorted(_script_name(code) for code in _scripts(char)))
    where = f"inside a {_script_name(main)} word"
    drawn_as = skeleton(char)
    if drawn_as != char and all(main in _scripts(c) or not _scripts(c) for c in drawn_as):
        return f"looks like a {_script_name(main)} letter, {where}"
    return f"a {mine} letter {where}"


def _described(text: str, found: list[tuple[int, str]]) -> str:
    return ", ".join(f"U+{ord(text[at]):04X} {unicodedata.name(text[at], 'unnamed')}: {why}"
                     for at, why in found)


# -- names ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _too_new(char: str) -> str | None:
    """Why names holding ``char`` cannot be compared, or None: the look-alike data or Python's
    normalization (its own Unicode version) does not know it."""
    table = identity_data.table()
    if table.scripts(char) is None:
        return f"not in Unicode {table.unicode}, the look-alike data's version"
    if unicodedata.category(char) == "Cn":
        return f"not in Unicode {unicodedata.unidata_version}, this Python's"
    return None


def check_name(name: Any, role: str = "approver") -> str:
    """``name`` stripped of surrounding spaces, or ``NameRefused`` saying what is wrong: not text
    or empty, over ``MAX_NAME_CHARS``, holding a character a reader cannot see or the Unicode data
    does not know yet, or mixing scripts."""
    if not isinstance(name, str) or not name.strip():
        raise NameRefused(f"name the {role}: what is decided must name its {role} (a non-empty "
                          f"'{role}', text), not {name!r}"[:200])
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise NameRefused(f"{role} name is {len(name)} characters; at most {MAX_NAME_CHARS}")
    hidden = hidden_characters(name)
    if hidden:
        raise NameRefused(f"{role} name {name!r} holds invisible or control characters "
                          f"({_described(name, hidden)}); type the name plainly")
    too_new = [(found.start(), why) for found in _NOT_PLAIN.finditer(name)
               if (why := _too_new(found.group()))]
    if too_new:
        raise NameRefused(f"{role} name {name!r} holds characters newer than the Unicode data "
                          f"names are compared with ({_described(name, too_new)}); write it "
                          "without them")
    if _mixes_scripts(name):
        mixed = mixed_script_letters(name)
        raise NameRefused(f"{role} name {name!r} mixes scripts ({_described(name, mixed)}); "
                          "write it in one script")
    return name


def skeleton(text: str) -> str:
    """TR39's skeleton of ``text``: NFD, each character replaced by its prototype (the data ICU
    ships, see ``hitl_kit.identity_data``), NFD again. Equal skeletons render alike.

    >>> skeleton("rnary") == skeleton("mary"), skeleton("B0B") == skeleton("BOB")
    (True, True)
    """
    mapped = unicodedata.normalize("NFD", text).translate(identity_data.table().skeletons)
    return unicodedata.normalize("NFD", mapped)


@functools.lru_cache(maxsize=8192)
def lookalike_keys(name: str) -> tuple[str, str, str]:
    """The three TR39 skeletons ``same_person`` compares: of the case-folded name, of the name as
    typed and of the upper-cased name, each after NFKC with hidden characters dropped and spaces
    collapsed."""
    shown = _ANY_HIDDEN.sub(lambda hidden: " " if hidden.group().isspace() else "", name)
    plain = " ".join(unicodedata.normalize("NFKC", shown).split())
    folded = unicodedata.normalize("NFKC", plain.casefold())  # NFKC_Casefold, ignorables gone
    return skeleton(folded), skeleton(plain), skeleton(plain.upper())


def person_key(name: Any) -> str:
    """The comparable form of a name: NFKC, case folded, default-ignorables dropped, spaces
    collapsed, then its TR39 skeleton. Total: any value gets a key, so names that failed
    ``check_name`` can still be compared (conservatively). Equal keys mean one person;
    ``same_person`` also catches look-alikes only one case shows (``ТОМ`` for ``Tom``).

    >>> person_key("ＲＩＴＡ") == person_key("rit\\u0430") == person_key("ri\\u200bta") == "rita"
    True
    """
    return lookalike_keys(name if isinstance(name, str) else str(name))[0]


def same_person(a: Any, b: Any) -> bool:
    """True when two names render alike in some case (see the module's limits); False when
    either is None."""
    if a is None or b is None:
        return False
    mine = lookalike_keys(a if isinstance(a, str) else str(a))
    theirs = lookalike_keys(b if isinstance(b, str) else str(b))
    return any(x == y for x, y in zip(mine, theirs, strict=True))


def one_of(name: Any, names: Iterable[str]) -> str | None:
    """The one name of ``names`` that is the same person as ``name``, or None. ``NameRefused``
    when several are: comparison is pairwise, so ``Ian`` matches both ``ian`` and ``lan``."""
    found = [known for known in names if same_person(name, known)]
    if len(found) > 1:
        raise NameRefused(f"{name!r} could be any of {', '.join(map(repr, found))}; "
                          "give the name exactly as it is listed")
    return found[0] if found else None


def check_new_person(name: Any, listed: Iterable[str] = ()) -> str:
    """A name to list as a person (a directory, a table of roles): ``check_name``'s, and neither
    one of the kit's own names nor the same person as a name already ``listed``; else
    ``NameRefused``."""
    name = check_name(name)
    if is_reserved(name):
        raise NameRefused(f"{name!r} is a name the kit keeps for itself; name a person")
    twin = next((known for known in listed if same_person(known, name)), None)
    if twin is not None:
        raise NameRefused(f"{name!r} is listed twice: it renders like {twin!r} (names that look "
                          "alike are one person)")
    return name


def is_reserved(name: Any) -> bool:
    """True for the kit's own approver names (``system``, ``auto``), however they are spelt."""
    return any(same_person(name, str(own)) for own in Approver)
