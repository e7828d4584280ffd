"""Is a signing secret strong enough? A length check alone lets 32 zero bytes through.

A secret signs approval links, dashboard sessions and CSRF tokens, or checks Slack's requests;
whoever can guess it can approve anything. ``secret_problem`` says what is wrong with a secret,
``require_strong_secret`` refuses it with that reason:

* one symbol repeated, a repeated pattern (``b"ab" * 16``), a counting run (``bytes(range(32))``);
* fewer than 128 bits even at best: its length times the bits of the smallest usual alphabet
  holding it (digits, hex, letters, base64, printable ASCII, bytes);
* far fewer distinct symbols than a random secret of that length and alphabet would have
  (``b"\\x00\\x01" * 10 + ...``: a few bytes shuffled);
* a well-known word (``password``, ``changeme``, ``qwerty``...).

    >>> secret_problem(bytes(32))
    'it is one byte repeated 32 times'
    >>> import secrets; secret_problem(secrets.token_bytes(32)) is None
    True

Limits: these are the obvious mistakes, caught without false alarms on random secrets (the tests
draw thousands). A secret that passes is not proven random: generate it with ``secrets``.
"""

from __future__ import annotations

import math
import string

MIN_BITS = 128
ALPHABETS = (  # smallest first; a secret is measured against the first one that holds it
    string.digits, "0123456789abcdef", "0123456789ABCDEF", string.ascii_lowercase,
    string.ascii_uppercase, string.ascii_letters, string.ascii_letters + string.digits,
    string.ascii_letters + string.digits + "-_", string.ascii_letters + string.digits + "+/=",
    string.printable[:95],
)
WELL_KNOWN = ("password", "passwort", "secret", "changeme", "letmein", "qwerty", "azerty",
              "asdfgh", "zxcvbn", "example", "default")


def _alphabet_size(data: bytes) -> int:
    used = set(data)
    for alphabet in ALPHABETS:
        if used <= set(alphabet.encode("ascii")):
            return len(alphabet)
    return 256


def _period(data: bytes) -> int | None:
    """The shortest p <= len/2 such that the data is its first p bytes repeated, or None."""
    for p in range(1, len(data) // 2 + 1):
        if all(data[i] == data[i - p] for i in range(p, len(data))):
            return p
    return None


def secret_problem(secret: bytes | str) -> str | None:
    """What makes ``secret`` guessable, in a few words, or None when nothing obvious does."""
    data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    n = len(data)
    if n == 0:
        return "it is empty"
    if len(set(data)) == 1:
        return f"it is one byte repeated {n} times"
    period = _period(data)
    if period is not None:
        return f"it repeats the same {period}-byte pattern"
    alphabet = _alphabet_size(data)
    bits = n * math.log2(alphabet)
    if bits < MIN_BITS:
        return (f"it holds at most {bits:.0f} bits ({n} symbols from an alphabet of {alphabet}); "
                f"at least {MIN_BITS} are needed")
    expected = alphabet * (1 - (1 - 1 / alphabet) ** n)
    if len(set(data)) < expected / 2:
        return (f"it uses only {len(set(data))} different symbols, where a random secret of "
                f"this length would use about {expected:.0f}")
    steps = {(b - a) % 256 for a, b in zip(data, data[1:], strict=False)}
    if len(steps) <= 2:
        return "it is a counting sequence (each byte a fixed step from the one before)"
    lowered = data.lower()
    for word in WELL_KNOWN:
        if word.encode("ascii") in lowered:
            return f"it contains the well-known word {word!r}"
    return None


def require_strong_secret(secret: bytes | str, what: str, how: str) -> None:
    """ValueError naming ``what`` was refused, why, and ``how`` to make a good one."""
    problem = secret_problem(secret)
    if problem is not None:
        raise ValueError(f"{what} is too weak to sign with: {problem}. {how}")
