"""Action names a drill never shows, for probing a lookup that must fail closed.

Most are built from the names the learner knows, because that is where lookups fail open: a
``.lower()``, a ``startswith``, a namespace cut off (``email.read_inbox``) or a fuzzy match turns
``Read_Inbox`` or ``read_inbox_and_forward`` into a known, harmless action.
Each name comes with the way it was made, which decides the hint.

>>> [u.name for u in unseen_names(["send"]) if u.how == CASE][:2]
['SEND', 'Send']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

CASE, SPACING, LOOKALIKE, AFFIX, NAMESPACE, NEW = (
    "case", "spacing", "look-alike", "affix", "namespace", "new")

HOW = {
    CASE: "{known} in other capitals",
    SPACING: "{known} with other spacing or separators",
    LOOKALIKE: "{known} with a look-alike or invisible character",
    AFFIX: "{known} with something added or cut",
    NAMESPACE: "{known} behind a namespace or separator",
    NEW: "a name nobody classified",
}
HINTS = {
    CASE: "Compare names exactly: no .lower(), .strip() or Unicode normalising. 'Read_Inbox' is "
          "another tool, not the one you classified.",
    SPACING: "Compare names exactly: no .strip(), .replace() or normalising of separators.",
    LOOKALIKE: "Compare names exactly: no Unicode normalising or 'closest match'; a name that "
               "only looks like a known one is another tool.",
    AFFIX: "No startswith, endswith, `in` or fuzzy matching: a name that starts or ends like a "
           "known one is a different tool.",
    NAMESPACE: "Compare the whole name: don't cut a prefix such as 'email.' or 'mcp__mail__' "
               "off before looking it up. 'email.read_inbox' is another tool (another server's, "
               "say) until someone classifies it.",
    NEW: "Look the name up with a default for the names that are not there, e.g. "
         "dict.get(name, default).",
}
# How tool names get a namespace in front (MCP servers, function-calling APIs, plugins), and a
# bare separator.
NAMESPACES = ("email.", "mail/", "gmail:", "mcp__email__", "functions.", "tools::", ".", "/")
NEW_NAMES = ("forward_all_mail", "empty_trash", "export_contacts", "delete_account", "get",
             "items", "__class__", "None", "", "*", "0")
_LOOKALIKES = {"e": "\u0435", "o": "\u043e", "a": "\u0430", "i": "\u0456", "c": "\u0441"}


def _variants(name: str) -> Iterable[tuple[str, str]]:
    words = name.split("_")
    yield name.upper(), CASE
    yield name.capitalize(), CASE
    yield name.title(), CASE
    yield words[0] + "".join(w.capitalize() for w in words[1:]), CASE
    yield " " + name, SPACING
    yield name + " ", SPACING
    yield name + "\n", SPACING
    yield name.replace("_", "-"), SPACING
    yield name.replace("_", " "), SPACING
    yield name.replace("_", ""), SPACING
    swapped = next((ch for ch in name if ch in _LOOKALIKES), None)
    if swapped:
        yield name.replace(swapped, _LOOKALIKES[swapped], 1), LOOKALIKE
    yield name[:1] + "\u200b" + name[1:], LOOKALIKE
    yield "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in name), LOOKALIKE
    yield name + "s", AFFIX
    yield name + "_all", AFFIX
    yield name + "2", AFFIX
    yield "bulk_" + name, AFFIX
    yield name[:-1], AFFIX
    yield words[0], AFFIX
    for prefix in NAMESPACES:
        yield prefix + name, NAMESPACE


class Unseen(NamedTuple):
    name: str
    how: str  # CASE, SPACING, LOOKALIKE, AFFIX or NEW: picks the hint
    base: str  # the known name it was made from ("" for a new one)

    def made(self) -> str:
        return HOW[self.how].format(known=repr(self.base))


def unseen_names(known: Iterable[str]) -> list[Unseen]:
    """Names close to ``known`` and some new ones, none of them in ``known``."""
    known = list(known)
    found: dict[str, Unseen] = {}
    for name in known:
        for variant, how in _variants(name):
            found.setdefault(variant, Unseen(variant, how, name))
    for first, second in zip(known, known[1:] + known[:1], strict=True):
        joined = f"{first}_and_{second}"  # starts like one known name, ends like another
        found.setdefault(joined, Unseen(joined, AFFIX, first))
    for name in NEW_NAMES:
        found.setdefault(name, Unseen(name, NEW, ""))
    return [unseen for name, unseen in found.items() if name not in set(known)]


def most_common_kind_first(failed: list[tuple]) -> list[tuple]:
    """Failures as (Unseen, ...) tuples, ordered so the first one's kind says what is wrong: a
    brand-new name failing means the default itself is wrong; otherwise the kind of name that
    fails most often says which shortcut the lookup takes."""
    kinds = Counter(item[0].how for item in failed)
    return sorted(failed, key=lambda item: (item[0].how != NEW, -kinds[item[0].how]))
