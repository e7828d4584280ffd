"""Secrets out, control characters escaped: what the audit trail does to text before storing it.

Tool arguments, reasons and other free text can carry credentials. ``sanitize`` returns a copy of
a value where secrets are replaced by ``[REDACTED sha256:<12 hex>]`` (the short hash lets an
auditor see "the same secret as before" without seeing it), and CR, LF, other control characters
and invisible or bidi characters are escaped, so a value cannot pass for a new log line or read
differently from what it is::

    >>> sanitize({"password": "hunter2", "to": "ana@example.com"})
    {'password': '[REDACTED sha256:f52fbd32b2b3]', 'to': 'ana@example.com'}
    >>> clean_text("retry; the db password: hunter2\\nok")
    'retry; the db password: [REDACTED sha256:f52fbd32b2b3]\\\\nok'

What is redacted:

- any value under a secret-looking key (``password``, ``api_key``, ``X-Api-Token``, ``pw``,
  ``pin``, ``key``, ``jwt``, ``otp``, ``sessionid``, ``ssh_key``, ``AccountKey``,
  ``Ocp-Apim-Subscription-Key``, ``x-functions-key``, ``oauth_consumer_key``...), whatever its
  type; under a ``...Key`` of a kind not known, or a signature, when the value is generated
  (16 characters or more of letters and digits: ``PartitionKey: orders2024`` stays);
- in any string: the value in ``name: value`` / ``name=value`` when the name is secret-looking
  (``password: x``, ``PGPASSWORD=x``, ``?access_token=x`` in a URL, ``"token": "x"`` in JSON
  text, ``Pwd={x;y}`` and ``AccountKey=x;`` in connection strings, ``?code=`` in a URL), also
  with the separator URL-encoded once or twice (``access_token%3Dx``, ``%22token%22%3A%22x``);
  the password in ``scheme://user:password@``; the credential after ``Bearer`` / ``Basic``;
  ``curl -u user:password`` with or without the space, a password glued to ``-p``
  (``mysql -pS3cret``); PEM private-key blocks; chat webhooks' URLs (Slack, Discord, Teams and
  any ``/webhooks/``, ``/hooks/`` path that ends in a generated token); and tokens of a known
  shape: ``VENDOR_TOKENS`` (OpenAI, Anthropic and other ``sk-`` keys, AWS, GitHub, GitLab,
  Slack, Discord and Telegram bots, Stripe, Google, Hugging Face, Replicate, Groq, npm, PyPI,
  RubyGems, Docker Hub, SendGrid, Mailgun, Mailchimp, Brevo, Vault... about sixty), JWTs.

Limits, up front: a secret with none of these shapes, written as prose ("my password is
hunter2"), passes. Bare hex digests, UUIDs and call ids are **not** redacted: they are identifiers
(commit ids, the trail's own hashes) and redacting them would hide evidence; nor is a token of
a vendor not in the table (a generic "prefix_ and a long random tail" rule would take call and
message ids for keys). The short hash is unsalted, so a weak password can be guessed from it: it
is evidence, not a vault.

Cost: linear in the length of the text. Measured here (``benchmarks/redaction.py``, CPU time):
about 18 ms for 1 MB of plain prose, and for each of 38 hostile inputs of 1 MB (dense
separators, near-miss prefixes, unterminated blocks, U+0130, dense control and invisible
characters...) about 0.1 to 3.3 times that. Two regex passes find candidates; each pattern
starts at one character of a small set, tests the next character or two before anything else,
and has a bounded width after it, so every position costs a bounded number of steps.
Candidates are then checked and extended in Python, and no extension reads a character twice.
A string with more than ``MAX_FINDINGS`` candidates is redacted whole (fail closed) rather than
piece by piece.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping

MAX_DEPTH = 100  # nesting of dicts and lists; deeper (or self-containing) values are refused
MAX_FINDINGS = 2048  # candidates examined in one string before it is redacted whole

# --- secret-looking names ------------------------------------------------------------------------

# A name is split into lower-case words ("X-Api-Key" -> x api key, "accessToken" -> access token)
# and squashed ("xapikey"). Errs on the side of redacting.
_EXACT = frozenset(
    "key pin pw pwd pass passwd password auth otp jwt sid dsn secret token cookie sessionid "
    "passcode apikey databaseurl dburl".split()
)
_SECRET_WORDS = frozenset(
    "password passwords passwd passphrase pwd pw pin secret secrets token otp totp hotp jwt "
    "cookie cookies credential credentials authorization auth dsn apikey bearer passcode "
    "sessionid privkey".split()
)
_SECRET_PARTS = (
    "password", "passwd", "passphrase", "apikey", "secretkey", "privatekey", "accesskey",
    "sshkey", "signingkey", "encryptionkey", "clientsecret", "appsecret", "webhooksecret",
    "sharedsecret", "apisecret", "sessionid", "sessiontoken", "sessionkey", "connectionstring",
    "connstr", "databaseurl", "authtoken", "accesstoken", "refreshtoken", "idtoken",
    "bearertoken", "apitoken", "csrftoken", "xsrftoken", "credential", "authorization",
    "setcookie", "accesssignature", "oauthsignature", "consumersecret",
)  # fmt: skip
_KEY_QUALIFIERS = frozenset(
    "api private secret ssh access signing encryption master license session auth client gpg "
    "pgp aes hmac rsa shared deploy app webhook account storage subscription function functions "
    "consumer admin service host".split()
)
# A last word that makes the name about a secret rather than the secret itself: token_count,
# secret_name, password_policy, private_key_path, max_tokens.
_INNOCENT_LAST = frozenset(
    "count counts length len limit limits max min size type kind name names id ids url uri urls "
    "endpoint path file filename expiry expires expiration ttl policy hint required enabled set "
    "changed updated format version algorithm alg scheme prefix field fields method mode usage "
    "used budget remaining status label tokens".split()
)
# Secret only as a URL query parameter: ?sig=..., ?X-Amz-Signature=...
_QUERY_ONLY = frozenset("sig signature xamzsignature".split())
# Names that hold a secret only when their value looks like one (``_looks_like_a_key``): a
# ``...Key`` of a kind not known (``PartitionKey=orders`` is not, ``HostKey=3kX9...`` is), a
# signature outside a URL, a ``code`` in a URL (an OAuth code, a function key; not ``code=200``).
_KEY_WORDS = frozenset(("key", "signature", "sig"))
_CODE_IN_URL = "code"

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_secret_name_cache: dict[str, bool] = {}


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(name)]


def is_secret_name(name) -> bool:
    """True when a key or parameter name looks like it holds a secret (``api_key``, ``pw``...).

    >>> [is_secret_name(n) for n in ("X-Api-Key", "ssh_key", "sessionId", "max_tokens", "key_id")]
    [True, True, True, False, False]
    """
    if not isinstance(name, str):
        return False
    known = _secret_name_cache.get(name)
    if known is not None:
        return known
    words = _words(name[:200])
    squashed = "".join(words)
    if squashed in _EXACT:
        secret = True
    elif len(words) > 1 and words[-1] in _INNOCENT_LAST:
        secret = False
    else:
        secret = (
            any(word in _SECRET_WORDS for word in words)
            or any(part in squashed for part in _SECRET_PARTS)
            or (words[-1:] == ["key"] and any(word in _KEY_QUALIFIERS for word in words))
        )
    if len(_secret_name_cache) >= 4096:
        _secret_name_cache.clear()
    _secret_name_cache[name] = secret
    return secret


def _maybe_secret_name(name: str, in_url: bool) -> bool:
    """A name whose value is a secret when it looks like one (``_KEY_WORDS``, ``code`` in a
    URL), and is not one of the names about a secret (``key_id``, ``signature_method``)."""
    words = _words(name[:200])
    return bool(words) and (words[-1] in _KEY_WORDS or (in_url and words == [_CODE_IN_URL]))


def _looks_like_a_key(value: str) -> bool:
    """Generated rather than chosen: 16 characters or more of one token, letters and digits."""
    return (len(value) >= 16 and _KEY_CHARS.fullmatch(value) is not None
            and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))


# --- where secrets sit inside text ----------------------------------------------------------------
#
# Two passes over a string, each one regex whose alternatives all start with a character from a
# small set (the engine skips every other character at C speed), with bounded width after it:
#
# - BACKWARD runs on the lower-cased text reversed, so that it can start at the separator of
#   "name: value" and read the name *before* it: ":" "=" ":=" "=>", then a name (read backwards)
#   that contains a secret word; "@" for the password in scheme://user:password@; the space
#   before "bearer"/"basic" for the credential after it; ":" after a Telegram bot's number.
# - FORWARD runs on the text as it is (token shapes are case-sensitive): "-", "_", ".", "A" and
#   "J" for vendors' token prefixes (``VENDOR_TOKENS``), PEM blocks (at "-BEGIN"), command-line
#   credentials (``-u user:pw``, ``-uuser:pw``, ``-pPassw0rd``); "/" for chat webhooks' URLs;
#   "%" for URL-encoded separators (``access_token%3D...``).
#
# The two sets share no character, so text made of one repeated character costs one pass's
# work per character at most. Each match is then checked and extended in Python; extensions
# never read the same character twice (see find_secrets).

# Words a secret-looking name contains, reversed; how the name is then judged: is_secret_name.
_NAME_WORDS = ("pass", "pw", "pin", "secret", "session", "sid", "sig", "token", "otp", "jwt",
               "key", "auth", "cookie", "credential", "dsn", "code")
_REVERSED_WORDS = [word[::-1] for word in _NAME_WORDS]
_NAME_BACKWARD = (  # the name read backwards: up to 12 characters, then a secret word
    r"(?P<NAME>[\w.-]{0,12}?"
    # the first two letters of a reversed word (two classes: a test most positions fail at
    # once), then the words
    r"(?=[" + "".join(sorted({word[0] for word in _REVERSED_WORDS})) + "]["
    + "".join(sorted({word[1] for word in _REVERSED_WORDS})) + "])(?:"
    + "|".join(_REVERSED_WORDS) + "))"
)


def _after(separator: str, rest: str, name: str, also: str = "", other: str = "") -> str:
    """A name after ``separator``: right after it (the common case, tried first), or after
    spaces or a quote; ``other``: another branch at the same separator. ``rest``: the
    separator's own conditions, checked once the next character shows a name may follow
    (``also``: another character it may be). One top-level branch per separator, guarded by
    one test of the next character: dense separators cost one test each."""
    other = f"|{other}" if other else ""
    return (f"{separator}(?=[\\w.{also}-][\\w.-]|[ \\t\"'{also}])(?:"
            # (a name with a secret word has two characters at least: one alone fails here)
            f"(?=[\\w.{also}-][\\w.-]){rest}{_NAME_BACKWARD.replace('NAME', name)}"
            f"|{rest}(?=[ \\t\"'])[ \\t]{{0,4}}[\"']?"
            f"{_NAME_BACKWARD.replace('NAME', name + '_spaced')}{other})")


BACKWARD = re.compile("|".join((
    # not the ":" of ":="; a Telegram bot token: digits, ":", 35 characters (read backwards)
    _after(":", "(?<!=:)", "name_colon",
           other=r"(?=[0-9]{8,10}(?![0-9]))(?<=[a-z0-9_-]{35}:)(?P<telegram>)"),
    _after("=", "(?<!==):?", "name_equals", also=":"),  # not "==" (a comparison)
    _after(">=", "", "name_arrow"),
    # password (it may hold ":"), then ":", the user, "//:" (first seen to be there: a scan
    # that never steps back)
    r"@(?=[^\s/?#@\\]{0,2600}+//:)(?P<password>[^\s/?#@:\\]{0,256}+(?::[^\s/?#@:\\]{0,256}+){0,8}?)"
    r":[^\s/?#@:\\]{0,128}+//:",
    # " bearer" / " basic" with at least 8 credential characters after it
    r" (?:reraeb(?!\w)(?<=[a-z0-9._~+/=-]{8} reraeb)|cisab(?!\w)(?<=[a-z0-9._~+/=-]{8} cisab))",
)))

# Vendors' token prefixes, by the character that ends the prefix, with the number of token
# characters that must follow it (a shorter run is a word, not a token). Sources: the vendors'
# documented formats and detect-secrets' plugins (measured there: its 27 plugins take about
# 2.6 s for 1 MB of prose, a hundred times this module, so their shapes are used, not their
# code). Chat: Slack, Discord, Telegram (BACKWARD); model hubs and AI APIs: OpenAI, Anthropic
# and most others (sk-), Hugging Face, Replicate, Groq, Perplexity, xAI, LangSmith; package
# registries: npm, PyPI, RubyGems, Docker Hub, Clojars, Artifactory (AKCp); mail: SendGrid,
# Mailgun, Mailchimp, Brevo, Resend; code hosts and clouds: GitHub, GitLab, AWS, Google,
# Atlassian, Shopify, Linear, DigitalOcean, Sentry, Postman, Pulumi, Grafana, Vault, Doppler,
# Terraform Cloud, Square, Stripe.
VENDOR_TOKENS = {
    "-": {"sk": 20, "glpat": 20, "gldt": 20, "glrt": 20, "glptt": 20, "glft": 20, "glsoat": 20,
          "gloas": 20, "glcbt": 20, "glimt": 20, "pypi": 50, "sq0atp": 20, "sq0csp": 20,
          "pplx": 30, "xai": 30, "pul": 30, "key": 32, "PMAK": 20, "xoxa": 10, "xoxb": 10,
          "xoxp": 10, "xoxo": 10, "xoxs": 10, "xoxr": 10, "xoxe": 10, "xapp": 10, "xkeysib": 40},
    "_": {"sk_live": 16, "sk_test": 16, "rk_live": 16, "rk_test": 16, "whsec": 16, "ghp": 30,
          "gho": 30, "ghu": 30, "ghs": 30, "ghr": 30, "github_pat": 30, "hf": 30, "r8": 30,
          "gsk": 40, "npm": 30, "dckr_pat": 20, "shpat": 30, "shpss": 30, "shpca": 30,
          "shppa": 30, "lin_api": 30, "lin_oauth": 30, "dop_v1": 40, "doo_v1": 40, "dor_v1": 40,
          "glc": 30, "glsa": 30, "sntrys": 30, "sntryu": 30, "rubygems": 40, "lsv2_pt": 30,
          "lsv2_sk": 30, "CLOJARS": 40, "re": 8, "ntn": 30},
    ".": {"SG": 22, "hvs": 24, "hvb": 24, "dp.pt": 30, "atlasv1": 30},
}
# Shapes that are not "prefix, separator, token", by the character they start at; those after
# a separator go behind its guard (a letter or digit before it).
_OTHER_SHAPES = {
    "-": (r"(?<=[0-9a-f]{32}-)us[0-9]{1,2}(?![0-9A-Za-z])",),  # Mailchimp: 32 hex, -us<dc>
    # Discord bot token: [MNO] and 23 to 25 characters, ".", 6, ".", 27
    ".": (r"(?:(?<=\b[MNO][A-Za-z0-9_-]{23}\.)|(?<=\b[MNO][A-Za-z0-9_-]{24}\.)"
          r"|(?<=\b[MNO][A-Za-z0-9_-]{25}\.))[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}",),
    "A": (r"K(?:IA(?<!\wAKIA)[A-Z0-9]{16}(?![A-Za-z0-9])|Cp(?<!\wAKCp)[A-Za-z0-9]{40})",
          r"SIA(?<!\wASIA)[A-Z0-9]{16}", r"BIA(?<!\wABIA)[A-Z0-9]{16}",
          r"CCA(?<!\wACCA)[A-Z0-9]{16}", r"Iza(?<!\wAIza)[0-9A-Za-z_-]{35}",
          r"TATT3(?<!\wATATT3)[A-Za-z0-9_=-]{40}"),
    "J": (r"(?<=\beyJ)[A-Za-z0-9_-]{10}",),
}
_PEM = r"BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----"  # at the last dash of five
# curl's -u / --user (with or without a space); a password glued to -p (mysql, sshpass...)
_COMMAND_LINE = (r"-user(?<!\S--user)(?:[ \t]{1,4}|=)[^\s:'\"\\]{1,128}:(?=[^\s'\"\\])"
                 r"|u(?<!\S-u)[ \t]{0,4}[^\s:'\"\\-][^\s:'\"\\]{0,127}:(?=[^\s'\"\\])"
                 r"|p(?<!\S-p)(?=[^\s=-])")
# Chat webhooks: the URL path after .../services/, /webhooks/, /hooks/, /webhookb2/
_WEBHOOK = (r"/(?=[shw])(?:(?<=hooks\.slack\.com/)services|webhooks?|hooks|webhookb2)/"
            r"(?=[A-Za-z0-9_-]{8})")
# "=" and ":" URL-encoded (%3D, %3A), once or twice (%253D)
_ENCODED_SEPARATOR = r"%(?:25)?3[DdAa]"


def _vendor_alternatives(separator: str) -> str:
    """The prefixes that end at ``separator``: first their last two characters (two classes,
    a test most positions fail at once), then one branch per prefix length: its prefixes (a
    fixed-width lookbehind), at least so many token characters after it."""
    by_length: dict[int, list[tuple[str, int]]] = {}
    for prefix, tail in VENDOR_TOKENS.get(separator, {}).items():
        by_length.setdefault(len(prefix), []).append((prefix, tail))
    sep, prefixes = re.escape(separator), VENDOR_TOKENS.get(separator, {})
    if not prefixes:
        return "(?!)"
    last_two = (f"(?<=[{re.escape(''.join(sorted({p[-2] for p in prefixes})))}]"
                f"[{re.escape(''.join(sorted({p[-1] for p in prefixes})))}]{sep})")
    return last_two + "(?:" + "|".join(
        f"(?<=\\b(?:{'|'.join(re.escape(p) for p, _ in group)}){sep})"
        f"[A-Za-z0-9_-]{{{min(tail for _, tail in group)}}}"
        for _, group in sorted(by_length.items())) + ")"


def _forward() -> re.Pattern:
    def after_token(separator: str) -> str:  # a letter or digit before the separator
        shapes = (*_OTHER_SHAPES.get(separator, ()), _vendor_alternatives(separator))
        return f"(?<=[A-Za-z0-9]{re.escape(separator)})(?:{'|'.join(shapes)})"

    # (no groups in this pass: entering one costs time at every "-"; find_secrets tells the
    # alternatives apart by the text where they start)
    return re.compile("|".join((
        rf"-(?:{_PEM}|{after_token('-')}|{_COMMAND_LINE})",
        rf"_{after_token('_')}", rf"\.{after_token('.')}",
        f"A(?:{'|'.join(_OTHER_SHAPES['A'])})", f"J(?:{'|'.join(_OTHER_SHAPES['J'])})",
        _WEBHOOK, _ENCODED_SEPARATOR)))


FORWARD = _forward()
PATTERNS = (BACKWARD, FORWARD)  # the scanning patterns; tests check their width is bounded
# Every match of the two passes contains one of these (a secret word, "://", " bearer"/" basic",
# a shape's prefix, a PEM header, a command-line option, a webhook's path, an encoded
# separator): a short string without any skips both passes.
GATE = re.compile("|".join((
    *_NAME_WORDS, "://", "bearer", "basic", "-u", "--user", "-p", "-begin", "hook", "%3", "%253",
    "-us[0-9]", "akia", "asia", "abia", "acca", "aiza", "akcp", "atatt3", "eyj", "[0-9]:",
    r"[mno][a-z0-9_-]{23,25}\.", *(re.escape(prefix + separator)
                                    for separator, prefixes in VENDOR_TOKENS.items()
                                    for prefix in prefixes),
)), re.IGNORECASE)
_GATED_LENGTH = 256  # longer strings go straight to the passes (the gate would cost a pass)

_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]*")
_TOKEN_BEFORE = re.compile(r"[A-Za-z0-9_.-]{0,128}")  # run on the text before, reversed
_KEY_CHARS = re.compile(r"[A-Za-z0-9+/=_.~-]+")
# A value ends at a space, a quote, ";" or "\\" (where an escaped line break would be once the
# text is stored: cleaning stored text again finds the same values).
_VALUE = re.compile(r"[^\s\"'`;\\]*")
_URL_VALUE = re.compile(r"[^\s\"'`;&#\\]*")
# After an encoded separator: up to an encoded "&", quote, ",", "}", "#" or ";" (or a raw one)
_ENCODED_VALUE = re.compile(r"(?:[^\s\"'`;&#\\%]+|%(?!(?:25)?(?:2[2367Cc]|7[Dd]|3[Bb])))*")
_ENCODED_QUOTES = ("%2522", "%2527", "%22", "%27")
_ESCAPED_HEX = re.compile(r"(?:25)?[0-9A-Fa-f]{2}")
_WEBHOOK_VALUE = re.compile(r"[^\s\"'`<>\\]*")
_NAME_CHAR = re.compile(r"[\w.-]")
_TRAILING_PUNCTUATION = ".,:)]}>"
_AUTH_SCHEMES = frozenset(("bearer", "basic", "token", "digest", "oauth"))
_MARKER_START = "[REDACTED sha256:"

# --- redacting ------------------------------------------------------------------------------------

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def redaction_marker(value) -> str:
    """``[REDACTED sha256:<first 12 hex of its sha256>]`` for a string (for another value, of
    its canonical JSON)."""
    raw = value if isinstance(value, str) else _CANONICAL.encode(value)
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    return f"[REDACTED sha256:{digest[:12]}]"


def _looks_random(token: str) -> bool:
    """A credential rather than a word: long enough, with a digit or an inner capital."""
    return len(token) >= 8 and (
        any(c.isdigit() for c in token) or any(c.isupper() for c in token[1:])
    )


def _name_start(text: str, end: int) -> int:
    """Where the name that ends at ``end`` starts (read back at most 64 characters)."""
    start, limit = end, max(0, end - 64)
    while start > limit and _NAME_CHAR.match(text, start - 1):
        start -= 1
    return start


def _lower_same_length(text: str) -> str:
    """``text.lower()``, one character for one: U+0130 (I with a dot) is the only character
    that lowers to two (Unicode 14); it becomes "i", which the passes treat alike."""
    return text.replace("\u0130", "i").lower() if "\u0130" in text else text.lower()


def _overlapping(pattern: re.Pattern, text: str) -> Iterator[re.Match]:
    """Every match of ``pattern``, also those that start inside an earlier one (finditer would
    skip them: the ":" of "redis://:pw@" ends a userinfo match and starts a name: value one)."""
    search, pos = pattern.search, 0
    while (match := search(text, pos)) is not None:
        yield match
        pos = match.start() + 1


def _candidates(text: str) -> list[tuple[int, str, int]] | None:
    """(where its secret would start, kind, extra) for each match of the two passes, in text
    order; None when there are more than MAX_FINDINGS."""
    found = []
    n = len(text)
    backward = _lower_same_length(text)[::-1]
    for match in _overlapping(BACKWARD, backward):
        if len(found) >= MAX_FINDINGS:
            return None
        group = match.lastgroup
        if group == "password":
            found.append((n - match.end("password"), "userinfo", n - match.start("password")))
        elif group == "telegram":  # the token starts after the ":"
            found.append((n - match.start(), "token", 0))
        elif group is None:  # " bearer" / " basic": the credential starts after the space
            found.append((n - match.start(), "scheme", 0))
        else:  # name:value; extra = where the name ends
            found.append((n - match.start(), "name", n - match.start(group)))
    for match in _overlapping(FORWARD, text):
        if len(found) >= MAX_FINDINGS:
            return None
        start = match.start()
        first = text[start]
        if text.startswith("-BEGIN", start):
            found.append((max(0, start - 4), "pem", 0))
        elif first == "-" and text.startswith(("-u", "--user"), start) and (
                start == 0 or text[start - 1].isspace()):
            found.append((match.end(), "userinfo", -1))  # curl -u user:password
        elif first == "-" and text.startswith("-p", start) and match.end() == start + 2:
            found.append((start + 2, "argument", 0))  # mysql -pPassw0rd
        elif first == "/":
            found.append((match.end(), "webhook", 0))
        elif first == "%":  # an encoded "=" or ":": the name before it (and its encoded quote)
            quote = next((q for q in _ENCODED_QUOTES if text.endswith(q, 0, start)), "")
            found.append((match.end(), "encoded", start - len(quote)))
        else:
            found.append((start, "shape", 0))
    found.sort()
    return found


def find_secrets(text: str) -> list[tuple[int, int]] | None:
    """Sorted, non-overlapping ``(start, end)`` spans of the secrets in ``text``; None when it
    holds more than ``MAX_FINDINGS`` candidates (the caller then redacts it whole)."""
    if len(text) <= _GATED_LENGTH and GATE.search(text) is None:
        return []
    candidates = _candidates(text)
    if candidates is None:
        return None
    spans: list[tuple[int, int]] = []
    read_up_to = 0  # every extension starts here or later: no character is read twice
    for at, kind, extra in candidates:
        if at < read_up_to:
            continue
        span = None
        if kind in ("name", "encoded"):
            span = _name_value(text, at, extra, spans[-1][1] if spans else 0,
                               encoded=kind == "encoded")
        elif kind == "userinfo":
            end = extra if extra >= 0 else _VALUE.match(text, at).end()
            read_up_to = end
            numeric = extra < 0 and text[at:end].replace(":", "").isdigit()  # -u 1000:1000
            span = None if numeric else (at, end)
        elif kind == "scheme":
            end = _TOKEN.match(text, at).end()
            read_up_to = end
            span = (at, end) if _looks_random(text[at:end]) else None
        elif kind == "argument":
            span = _quoted_or_bare(text, at)
            read_up_to = span[1]
            value = text[span[0]:span[1]]
            span = span if _looks_random(value) and not value.isdigit() else None
        elif kind == "webhook":
            end = _WEBHOOK_VALUE.match(text, at).end()
            read_up_to = end
            span = (at, end) if end - at >= 20 and _looks_random(text[at:end]) else None
        elif kind == "pem":
            end_marker = text.find("-----END", at + 10)
            close = -1 if end_marker < 0 else text.find("-----", end_marker + 8)
            span = (at, len(text) if close < 0 else close + 5)  # a key cut off is still a key
        else:  # a token: from the start of its prefix to its end
            floor = max(read_up_to, at - 128, spans[-1][1] if spans else 0)
            start = at - _TOKEN_BEFORE.match(text[floor:at][::-1]).end() if kind == "shape" \
                else at
            end = _TOKEN.match(text, at).end()
            read_up_to = end
            token = text[start:end]
            span = (start, end) if "eyJ" in token[:3] or _looks_random(token) else None
        if span is not None and span[1] > span[0] and not text.startswith(_MARKER_START,
                                                                          span[0]):
            if spans and span[0] <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(span[1], spans[-1][1]))
            else:
                spans.append(span)
            read_up_to = max(read_up_to, span[1])
    return spans


def _quoted_or_bare(text: str, at: int) -> tuple[int, int]:
    """The value at ``at``: inside its quotes if it is quoted, else up to a space, quote, ";"."""
    if at < len(text) and text[at] in "\"'`":
        close = text.find(text[at], at + 1)
        return at + 1, len(text) if close < 0 else close
    return at, _VALUE.match(text, at).end()


def _name_value(text: str, value_at: int, name_end: int, floor: int, *,
                encoded: bool = False) -> tuple[int, int] | None:
    """The value after ``name:`` / ``name=`` when the name is secret-looking. The name starts
    at ``floor`` at the earliest: a name does not reach into a secret redacted before it.
    ``encoded``: the separator was URL-encoded (``%3D``), so is the value's end."""
    start = _name_start(text, name_end)
    if floor <= name_end:
        start = max(start, floor)
    if start > 0 and text[start - 1] == "%" and (escape := _ESCAPED_HEX.match(text, start)):
        start = escape.end()  # an encoded "?" or "&" before the name: "%3Ftoken", "%253Ftoken"
    name = text[start:name_end].lstrip("-.")
    in_url = encoded or (start > 0 and text[start - 1] in "?&#;")
    certain = is_secret_name(name) or (in_url and "".join(_words(name)) in _QUERY_ONLY)
    if not (certain or _maybe_secret_name(name, in_url)):
        return None
    while value_at < len(text) and text[value_at] in " \t":
        value_at += 1
    if encoded:
        value_at += len(next((q for q in _ENCODED_QUOTES if text.startswith(q, value_at)), ""))
    if value_at < len(text) and text[value_at] in "\"'`{" and not encoded:
        close = text.find("}" if text[value_at] == "{" else text[value_at], value_at + 1)
        value_at, end = value_at + 1, len(text) if close < 0 else close
        if text.startswith(_MARKER_START, value_at):
            return None
        return (value_at, end) if certain or _looks_like_a_key(text[value_at:end]) else None
    if text.startswith(_MARKER_START, value_at):  # redacted already
        return None
    value = _ENCODED_VALUE if encoded else _URL_VALUE if in_url else _VALUE
    end = value.match(text, value_at).end()
    while end > value_at and text[end - 1] in _TRAILING_PUNCTUATION:
        end -= 1
    if text[value_at:end].lower() in _AUTH_SCHEMES:  # "Authorization: Bearer xyz"
        after = end
        while after < len(text) and text[after] in " \t":
            after += 1
        end = max(end, _TOKEN.match(text, after).end())
    if not certain and not _looks_like_a_key(text[value_at:end]):
        return None
    return value_at, end


def redact_text(text: str) -> str:
    """``text`` with each secret found in it replaced by its marker."""
    spans = find_secrets(text)
    if spans is None:
        return redaction_marker(text)
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts += (text[last:start], redaction_marker(text[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


# Control characters (C0, DEL, C1), line/paragraph separators, zero-width and bidi controls,
# the BOM, and lone surrogates (which UTF-8 cannot store).
_UNSAFE_RANGES = ((0x00, 0x1f), (0x7f, 0x9f), (0x61c, 0x61c), (0x200b, 0x200f), (0x2028, 0x202e),
                  (0x2060, 0x2064), (0x2066, 0x2069), (0xfeff, 0xfeff), (0xd800, 0xdfff))
_UNSAFE_CHARS = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}"
                                         for low, high in _UNSAFE_RANGES) + "]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPES = {code: _NAMED_ESCAPES.get(chr(code), f"\\u{code:04x}")
            for low, high in _UNSAFE_RANGES for code in range(low, high + 1)}
_UNSAFE_SINGLES = tuple(chr(code) for code in _ESCAPES if not 0xD800 <= code <= 0xDFFF)


def escape_controls(text: str) -> str:
    """Make control, invisible and bidi characters visible (``\\n``, ``\\u202e``): a value can't
    fake a new log line or be displayed in another order than it is stored."""
    if _UNSAFE_CHARS.search(text) is None:
        return text
    if len(text) <= 4096:
        return _UNSAFE_CHARS.sub(_escape_match, text)
    # Long: a few kinds of unsafe character are replaced kind by kind (each a pass in C; which
    # kinds are there is found by memchr-fast ``in``); many kinds go through a translate table.
    present = [char for char in _UNSAFE_SINGLES if char in text]
    if len(present) > 8 or _SURROGATE.search(text) is not None:
        return text.translate(_escape_table())
    for char in present:
        text = text.replace(char, _ESCAPES[ord(char)])
    return text


def _escape_match(match: re.Match) -> str:
    return _ESCAPES[ord(match.group())]


@functools.cache
def _escape_table() -> list:
    """``str.translate``'s table as a list (faster than a dict): each code point up to the last
    unsafe one maps to itself, the unsafe ones to their escapes; later ones are left alone."""
    table: list = list(range(max(_ESCAPES) + 1))
    for code, escaped in _ESCAPES.items():
        table[code] = escaped
    return table


_clean_cache: dict[str, None] = {}  # short strings already known to need no change (no secrets)


def clean_text(text: str) -> str:
    """Secrets redacted, then unsafe characters escaped: what the trail stores for free text."""
    if text in _clean_cache:
        return text
    cleaned = escape_controls(redact_text(text))
    if cleaned == text and len(text) <= 256:
        if len(_clean_cache) >= 4096:
            _clean_cache.clear()
        _clean_cache[text] = None
    return cleaned


def sanitize(value, *, _depth: int = 0):
    """Copy of a JSON-like value (dicts, lists, strings, numbers) with secrets redacted and unsafe
    characters escaped, at any depth up to ``MAX_DEPTH``.

    Raises ValueError for a value nested deeper than that (or containing itself), and for a dict
    whose keys become equal once cleaned: nothing is dropped silently.
    """
    if isinstance(value, str):
        return clean_text(value)
    if type(value) is dict or isinstance(value, Mapping):
        if _depth >= MAX_DEPTH:
            raise _too_deep()
        cleaned = {}
        for key, item in value.items():
            clean_key = clean_text(key) if isinstance(key, str) else key
            if clean_key in cleaned:
                raise ValueError(
                    f"two keys become {clean_key!r} once secrets and control characters are "
                    "replaced; rename one of them"
                )
            if is_secret_name(key) or (isinstance(item, str) and isinstance(key, str)
                                       and _maybe_secret_name(key, False)
                                       and _looks_like_a_key(item)):
                _check_depth(item, _depth + 1)
                cleaned[clean_key] = redaction_marker(item)
            else:
                cleaned[clean_key] = sanitize(item, _depth=_depth + 1)
        return cleaned
    if isinstance(value, (list, tuple)):
        if _depth >= MAX_DEPTH:
            raise _too_deep()
        return [sanitize(item, _depth=_depth + 1) for item in value]
    return value


def _check_depth(value, depth: int) -> None:
    """ValueError if ``value`` nests deeper than MAX_DEPTH from ``depth`` (no recursion)."""
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (Mapping, list, tuple)):
            if level >= MAX_DEPTH:
                raise _too_deep()
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, level + 1) for child in children)


def _too_deep() -> ValueError:
    return ValueError(
        f"the value nests dicts/lists more than {MAX_DEPTH} levels deep (or contains itself); "
        "flatten it or pass a summary instead"
    )
