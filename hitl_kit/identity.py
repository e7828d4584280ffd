"""Who is who (interim: the identity helper's module replaces this one)."""

from __future__ import annotations

import unicodedata

from hitl_kit.vocabulary import Approver

MAX_NAME_CHARS = 64


class NameRefused(ValueError):
    """A name that cannot be used to tell people apart."""


def _hidden(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in text
            if unicodedata.category(c) in ("Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp")]


def check_name(name, role: str = "approver") -> str:
    if not isinstance(name, str) or not name.strip():
        raise NameRefused(f"a decision must name its {role} (a non-empty '{role}')")
    name = name.strip()
    hidden = _hidden(name)
    if hidden:
        raise NameRefused(f"{role} name {name!r} holds invisible or control characters "
                          f"({', '.join(hidden)}); type the name plainly")
    if len(name) > MAX_NAME_CHARS:
        raise NameRefused(f"{role} name is {len(name)} characters; at most {MAX_NAME_CHARS}")
    return name


def person_key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def same_person(a, b) -> bool:
    return a is not None and b is not None and person_key(a) == person_key(b)


def is_reserved(name: str) -> bool:
    return person_key(name) in {person_key(a) for a in Approver}
