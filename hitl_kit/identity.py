"""Who is who: the one rule for the names people go by.

A name decides who may approve, who asked for an action (and so may not approve it), which names
are the kit's own (``system``, ``auto``) and whether two approvals came from two people. This
module is the only place that rule is written; every channel, table and page uses it.

* ``check_name``: a name someone may go by, or ``NameRefused`` saying what is wrong: empty, too
  long, holding a character a reader cannot see, or mixing scripts (a Cyrillic ``а`` in a Latin
  name).
* ``same_person``: two names are one person when they render alike as typed, once both are
  written in small letters, or once both are written in capitals, hidden characters and
  full-width forms aside. ``person_key`` is the comparable form in small letters; ``one_of``
  finds a person among known names.
* ``is_reserved``: the kit's own names, however they are spelt.
* ``hidden_characters`` and ``mixed_script_letters``: what a reader cannot see, or cannot tell
  apart. The renderer marks exactly these; ``check_name`` refuses names holding any.

Limits, first:

* "Render alike" means Unicode's TR39 confusables, as ICU (PyICU) ships them, with its scripts
  and character properties: as current as the installed ICU (72.1, Unicode 15.0, on Debian 12;
  76, Unicode 16.0, on Debian 13), updated with the system. Nothing is kept by hand but U+2800,
  a Braille blank that is a symbol yet draws nothing. TR39 draws ``rn`` as ``m``, ``0`` as ``O``
  and a capital ``I`` as ``l``: ``rnary`` is ``mary``, ``b0b`` is ``bob``, ``Ian`` is ``lan``.
  Letters one font happens to draw alike, and TR39 does not list, are two people.
* Three views, not one key: a capital ``I`` is ``l`` to the eye and ``i`` in small letters, so
  one key holding both would make ``Nell`` and ``Neil`` one person, and merging every case pair
  with every look-alike joins whole groups of Latin letters (measured with ICU 72: r t u y z,
  c o 0 6, e 3 7, f s 5, i l 1, n v). ``same_person`` is therefore not transitive (``Ian`` is
  ``ian`` and is ``lan``, two people); ``one_of`` refuses a name that could be two listed people.
* Not caught, by that choice: a look-alike that needs the eye's view and a change of case at
  once (``Iia`` reads as ``lia``, the small-letter form of ``Lia``, yet is not ``Lia``).
* Scripts may mix only as TR39's "highly restrictive" level allows: one script, or Latin with
  Han and Hiragana/Katakana, Bopomofo or Hangul. Digits, spaces and punctuation go with any.
* Cost, measured by ``benchmarks/identity.py``: about 6 microseconds a name the first time,
  about 0.5 after (the last 8,192 names are cached); NFKC and case folding alone take 0.35.

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

import icu

from hitl_kit.vocabulary import Approver

MAX_NAME_CHARS = 64


def _frozen_set(pattern: str) -> icu.UnicodeSet:
    chars = icu.UnicodeSet(pattern)
    chars.freeze()  # read-only from here on, so threads may share it
    return chars


_FOLD = icu.Normalizer2.getNFKCCasefoldInstance()  # NFKC, case folded, default-ignorables gone
_NFKC = icu.Normalizer2.getNFKCInstance()
_SPOOF = icu.SpoofChecker()
_SPOOF.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
_SPOOF.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL)
_COMBINING = _frozen_set("[:Mn:]")
_NO_SCRIPT = {icu.UScriptCode.COMMON, icu.UScriptCode.INHERITED}
_PLAIN = re.compile(r"[\x20-\x7e]*")  # printable ASCII: nothing hidden, one script
_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")
# Why a reader cannot see a character for what it is; the first set holding it answers.
_HIDDEN = [(_frozen_set(pattern), why) for pattern, why in [
    ("[:Bidi_Control:]", "bidi control: reorders the text around it"),
    ("[:Cc:]", "control character"),
    (r"[[:Default_Ignorable_Code_Point:][:Cf:]\u2800]", "invisible"),
    ("[:Cn:]", "unassigned: no font draws it"),
    ("[:Co:]", "private use: each font draws it its own way"),
    ("[[:Zl:][:Zp:]]", "line or paragraph separator"),
    (r"[[:Zs:]-[\u0020]]", "a space that is not a plain space"),
]]


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
    return next((why for chars, why in _HIDDEN if chars.contains(char)), None)


def hidden_characters(text: str) -> list[tuple[int, str]]:
    """(position, why) for each character of ``text`` a reader would not see: those with a
    ``hidden_reason``, and a combining mark repeating the one before it (it is drawn once).

    >>> hidden_characters("ri\\u200bta\\u202e")
    [(2, 'invisible'), (5, 'bidi control: reorders the text around it')]
    """
    found = []
    for match in _NOT_PLAIN.finditer(text):
        at, char = match.start(), match.group()
        why = hidden_reason(char)
        if why is None and at and _COMBINING.contains(char) and \
                unicodedata.normalize("NFD", text[at - 1]).endswith(char):
            why = "repeats the mark before it, which is drawn once"
        if why is not None:
            found.append((at, why))
    return found


@functools.lru_cache(maxsize=4096)
def _scripts(char: str) -> frozenset[int]:
    """The scripts ``char`` is written in (Script_Extensions), none for digits, marks, spaces."""
    return frozenset(icu.Script.getScriptExtensions(char)) - _NO_SCRIPT


def _script_name(code: int) -> str:
    return icu.Script(code).getName().replace("_", " ")


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
    if _PLAIN.fullmatch(text) or not _SPOOF.check(text):
        return []
    scripts = [_scripts(char) for char in text]
    counts = Counter(code for found in scripts for code in found)
    main = max(counts, key=lambda code: (counts[code], code == icu.UScriptCode.LATIN))
    return [(at, _foreign(text[at], main)) for at, found in enumerate(scripts)
            if found and main not in found]


def _foreign(char: str, main: int) -> str:
    mine = " or ".join(sorted(_script_name(code) for code in _scripts(char)))
    where = f"inside a {_script_name(main)} word"
    drawn_as = _SPOOF.getSkeleton(0, char)
    if drawn_as != char and all(main in _scripts(c) or not _scripts(c) for c in drawn_as):
        return f"looks like a {_script_name(main)} letter, {where}"
    return f"a {mine} letter {where}"


def _described(text: str, found: list[tuple[int, str]]) -> str:
    return ", ".join(f"U+{ord(text[at]):04X} {unicodedata.name(text[at], 'unnamed')}: {why}"
                     for at, why in found)


# -- names ---------------------------------------------------------------------------------------

def check_name(name: Any, role: str = "approver") -> str:
    """``name`` stripped of surrounding spaces, or ``NameRefused`` saying what is wrong: not text
    or empty, over ``MAX_NAME_CHARS``, holding a character a reader cannot see, or mixing
    scripts."""
    if not isinstance(name, str) or not name.strip():
        raise NameRefused(f"name the {role}: a non-empty '{role}' (text) is required, not "
                          f"{name!r}"[:200])
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise NameRefused(f"{role} name is {len(name)} characters; at most {MAX_NAME_CHARS}")
    hidden = hidden_characters(name)
    if hidden:
        raise NameRefused(f"{role} name {name!r} holds invisible or control characters "
                          f"({_described(name, hidden)}); type the name plainly")
    if not _PLAIN.fullmatch(name) and _SPOOF.check(name):
        mixed = mixed_script_letters(name)
        raise NameRefused(f"{role} name {name!r} mixes scripts ({_described(name, mixed)}); "
                          "write it in one script")
    return name


@functools.lru_cache(maxsize=8192)
def lookalike_keys(name: str) -> tuple[str, str, str]:
    """The three TR39 skeletons ``same_person`` compares: of the case-folded name, of the name as
    typed and of the upper-cased name, each after NFKC with hidden characters dropped and spaces
    collapsed."""
    shown = "".join(char if hidden_reason(char) is None else " " if char.isspace() else ""
                    for char in name)
    plain = " ".join(_NFKC.normalize(shown).split())
    return tuple(_SPOOF.getSkeleton(0, form)
                 for form in (_FOLD.normalize(plain), plain, plain.upper()))


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
