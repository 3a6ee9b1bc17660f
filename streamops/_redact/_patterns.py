"""The built-in pattern library of :func:`streamops.redact`: named, categorised, bounded.

Every pattern is bounded (no unbounded ``+``/``*``), so whether a match can
still grow is always decidable within a small window, and each one guards its
ends with one-character lookarounds instead of ``\\b`` so that a secret glued
to other text (``xsk-...``) is not matched half-way. Order matters: patterns
are tried as one alternation, leftmost match first, and at the same start the
earlier pattern wins (``sk-ant-`` before ``sk-``, cards before phone numbers).
Validators run on a final match. When one rejects the match, shorter ends of the same
pattern at the same start are tried (longest first), then the later patterns; see
``docs/redact.md`` ("validated leftmost-longest").
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import regex

__all__ = ("PatternSpec", "builtin_patterns", "card_valid", "iban_valid", "luhn_valid")

Action = Literal["redact", "block", "flag"]


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """A named redaction pattern: what to look for and what to do with a match.

    ``pattern`` is a regex source string (``regex`` module syntax) or a compiled
    ``regex``/``re`` pattern (its flags are kept). ``label`` is the placeholder
    used by the default replacement (``"[NAME]"`` when omitted). ``validator``
    is called with the matched text of a final match: when it returns false,
    shorter matches of the pattern at the same start are tried, longest first,
    then the later patterns, as if the validator were part of the pattern.
    ``action`` overrides the operator's default action for this pattern.
    ``evidence`` is a regex that a *partial* match must contain to be masked
    when the stream is cut by force (a budget, a ``length`` finish): a cut
    mid-way through ``jo.smith@exa`` is masked, a cut after the plain word
    ``Paris`` (which could have begun an address) is not. ``None`` masks every
    live partial match (the safe default for user patterns). ``allow`` lists
    exact texts that are never a match (documentation examples, ``127.0.0.1``):
    an allowlisted match is treated like one its validator rejects.
    Numbered group references (``\\1``) are refused: patterns are combined into
    one alternation, use named groups instead.

    >>> spec = PatternSpec("ticket", r"TCK-[0-9]{6}", category="internal")
    >>> spec.placeholder
    '[TICKET]'
    """

    name: str
    pattern: str | regex.Pattern[str] | re.Pattern[str]
    category: str = "custom"
    label: str | None = None
    validator: Callable[[str], bool] | None = None
    action: Action | None = None
    description: str = ""
    evidence: str | None = None
    allow: tuple[str, ...] = ()

    def accepts(self, text: str) -> bool:
        """Whether a match of ``text`` counts: not allowlisted, and its validator agrees."""
        if text in self.allow:
            return False
        return self.validator is None or self.validator(text)

    @property
    def placeholder(self) -> str:
        """The label used by the default replacement."""
        return self.label if self.label is not None else f"[{self.name.upper()}]"


def luhn_valid(text: str) -> bool:
    """Return True when the digits of ``text`` (13 to 19 of them) pass the Luhn check.

    Separators (spaces, dashes) are ignored.

    >>> luhn_valid("4111 1111 1111 1111"), luhn_valid("4111 1111 1111 1112")
    (True, False)
    """
    digits = _digits(text)
    if not 13 <= len(digits) <= 19:
        return False
    doubled = digits[-2::-2]
    if doubled.isascii():  # by a table: every doubled value is one digit again
        doubled = doubled.translate(_DOUBLED)
    else:  # (other scripts' decimal digits)
        doubled = "".join(str(int(d)) for d in doubled).translate(_DOUBLED)
    total = sum(map(int, digits[-1::-2])) + sum(map(int, doubled))
    return total % 10 == 0


_NON_DIGIT = re.compile(r"\D")
_DOUBLED = str.maketrans("0123456789", "0246813579")  # the Luhn value of a doubled digit


def _digits(text: str) -> str:
    """The decimal digits of ``text`` (validators run on every shorter end: keep it cheap)."""
    return text if text.isdecimal() else _NON_DIGIT.sub("", text)


def iban_valid(text: str) -> bool:
    """Return True when ``text`` (spaces ignored) is an IBAN with a valid mod-97 checksum.

    >>> iban_valid("GB82 WEST 1234 5698 7654 32"), iban_valid("GB82 WEST 1234 5698 7654 33")
    (True, False)
    """
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isascii() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def card_valid(text: str) -> bool:
    """Return True for a payment card number: a known issuer range (IIN), a length that
    issuer uses, and the Luhn check. Separators (spaces, dashes) are ignored.

    >>> card_valid("4111 1111 1111 1111"), card_valid("1700000000000000")
    (True, False)
    """
    digits = _digits(text)
    n = len(digits)
    if n < 12:
        return False
    return _issuer_at(digits[:4], n) and luhn_valid(digits)


@functools.lru_cache(maxsize=100_000)  # one entry per 4-digit prefix and length at most
def _issuer_at(four: str, n: int) -> bool:
    return _issuer(four, n)


def _issuer(digits: str, n: int) -> bool:
    """Whether a card number of ``n`` digits starting with ``digits`` (4 or more) has
    a known issuer range (IIN) and a length that issuer uses."""
    two, three, four = int(digits[:2]), int(digits[:3]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)  # Mastercard
        or (two in (34, 37) and n == 15)  # American Express
        or ((four == 6011 or two == 65 or 644 <= three <= 649) and n in (16, 19))  # Discover
        or (3528 <= four <= 3589 and 16 <= n <= 19)  # JCB
        or ((300 <= three <= 305 or two in (36, 38, 39)) and 14 <= n <= 19)  # Diners
        or (two == 62 and 16 <= n <= 19)  # UnionPay
        or (two in (50, 56, 57, 58, 63, 67) and 12 <= n <= 19)  # Maestro
    )


def _card_hopeless(text: str) -> bool:
    """Whether no text starting like ``text`` can be a card: its first four digits are
    in no issuer's range at any length (a year, 1990 2021 ...). Every shorter end of a
    card attempt starts with the same digits, so none of them needs validating."""
    digits = _digits(text[:9])[:4]  # four digits within the first group (and a separator)
    return len(digits) == 4 and _no_issuer(digits)


@functools.lru_cache(maxsize=10_000)  # one entry per 4-digit prefix at most
def _no_issuer(digits: str) -> bool:
    return not any(_issuer(digits, n) for n in range(12, 20))


# What documentation, examples and templates put where a secret goes: never a secret.
_PLACEHOLDER_WORDS = frozenset(
    (
        "admin",
        "changeit",
        "changeme",
        "default",
        "dummy",
        "example",
        "guest",
        "mypassword",
        "pass",
        "passw0rd",
        "passwd",
        "password",
        "postgres",
        "pwd",
        "root",
        "secret",
        "test",
        "user",
        "username",
    )
)
_PLACEHOLDER_PARTS = (
    "xxx",
    "***",
    "...",
    "\u2026",
    "change_me",
    "change-me",
    "changeme",
    "example",
    "placeholder",
    "redacted",
    "replace",
    "your",
    "_here",
    "-here",
)
# A reference, not a value: $VAR, ${VAR}, $(cmd), <your-key>, {{ var }}, %(name)s, [var]
_REFERENCE_START = tuple("$<{%[")
# Code, not a value: a dotted name or a call (settings.SECRET_KEY, os.environ[, get_pw())
_CODE = re.compile(r"[A-Za-z_]\w*(?:(?:\.[A-Za-z_]\w*)+(?:[(\[].*)?|[(\[].*)")


def _placeholder(value: str) -> bool:
    """Whether ``value`` is what docs and templates write where a secret goes."""
    low = value.lower()
    return (
        low in _PLACEHOLDER_WORDS
        or value.startswith(_REFERENCE_START)
        or len(set(value)) == 1
        or any(part in low for part in _PLACEHOLDER_PARTS)
    )


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s character distribution (0 for an empty text).

    >>> shannon_entropy("aaaa"), shannon_entropy("abcd")
    (0.0, 2.0)
    """
    n = len(text)
    return sum(c / n * math.log2(n / c) for c in Counter(text).values()) if n else 0.0


def generic_secret_valid(text: str) -> bool:
    """Whether the value after a secret's keyword (``password = ...``) looks like a secret.

    Eight characters or more, a letter and a digit or symbol, at least 3 bits of
    entropy per character (a 32-character hex key has ~3.9, ``Passw0rd`` 2.75), and
    not a placeholder (``changeme``, ``${VAR}``, ``<your-key>``, ``xxxx``, ``****``),
    an identifier or a piece of code (``settings.SECRET_KEY``, ``get_password()``).

    >>> generic_secret_valid("Tr0ub4dor&3-correct-horse"), generic_secret_valid("changeme123")
    (True, False)
    """
    if len(text) < 8 or _placeholder(text) or _CODE.fullmatch(text):
        return False
    letter = any(c.isalpha() for c in text)
    other = any(c.isdigit() or not (c.isalnum() or c in "_ ") for c in text)
    return letter and other and shannon_entropy(text) >= 3.0


def url_password_valid(text: str) -> bool:
    """Whether the password of a URL (``scheme://user:PASSWORD@host``) is not a placeholder.

    A password in a URL needs no entropy to be one (``hunter2``), but docs and
    compose files write ``user:password``, ``postgres:postgres``, ``${DB_PASSWORD}``.

    >>> url_password_valid("hunter2"), url_password_valid("password"), url_password_valid("<pw>")
    (True, False, False)
    """
    return not _placeholder(text)


def _phone_digits_ok(text: str) -> bool:
    """E.164 allows at most 15 digits; a national number (no ``+``) at most 12; 7 at least."""
    digits = len(_digits(text))
    return 7 <= digits <= (15 if text.startswith("+") else 12)


# The one-character guards shared by most patterns: not glued to a token before or after.
_TOKEN_START = r"(?<![A-Za-z0-9_-])"
_TOKEN_END = r"(?![A-Za-z0-9_-])"
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# An unbroken number assigned to an identifier-like key (``build_id = ...``,
# ``"id": ...``, ``ID: ...``, ``userId=...``, ``"ts": ...``) is an id or a timestamp,
# whatever its digits: ~10% of random 16-digit ids starting with 4 or 5 pass the issuer
# and Luhn checks. Printed groups (``4111 1111 ...``) are a card whatever the key.
_ID_KEY = (
    r"(?:(?<![A-Za-z])(?:id|ids|ts)|(?<=[a-z])(?:Id|Ids)|ID|IDs|TS|_ts"
    r"|(?i:timestamp|epoch|nonce|seq|serial|build))"
)
# Quantifiers inside a lookbehind are lazy (``??``, ``{0,3}?``): a lookbehind only asks
# whether some path matches, so lazy and greedy say the same, but ``regex``'s partial
# matching misjudges a greedy one after a literal of two characters or more:
# ``(?<=ok ?)\S`` is a partial match at the ``[`` of ``items: [``, which no later text
# can make match, and the filter held ordinary JSON as a possible secret
# (tests/test_redact_hold.py).
_NOT_AN_ID = rf"(?<!{_ID_KEY}[\"']??[ \t]{{0,3}}?[:=][ \t]{{0,3}}?[\"']??)"
# A secret's keyword (the end of the key: DB_PASSWORD, "apiKey", _authToken) and an
# assignment (=, :, :=, ==, =>), with the quotes of a JSON or Python key; read in a
# lookbehind, so its quantifiers are lazy.
_SECRET_KEY = (
    r"(?i:pass(?:word|wd|phrase)??|pwd|secret|secret[_-]??key|api[_-]??key|access[_-]??key"
    r"|private[_-]??key|token|credentials??)"
    r"[\"']??[ \t]{0,3}?(?:[:=]{1,2}?|=>)[ \t]{0,3}?"
)
# The first two digits of every issuer range card_valid knows (Visa 4, Mastercard 51-55
# and 22-27, Amex 34/37, Discover 6011/65/644-649, JCB 35, Diners 30/36/38/39, UnionPay
# 62, Maestro 50/56-58/63/67): tests/test_redact_review.py checks it against card_valid.
_IIN = r"(?:2[2-7]|3[04-9]|[456][0-9])"
_DOMAIN = r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}(?:[^\W\d_]{2,24}|xn--[a-z0-9-]{1,59})"

_BUILTINS: tuple[PatternSpec, ...] = (
    PatternSpec(
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,2}PRIVATE KEY(?: BLOCK)?-----"
        # The body never contains "-----END ": stopping the body there lets the
        # filter release the block as soon as its footer is complete, instead of
        # holding it while a lazy [\s\S]*? could still run on to a later footer.
        # Base64 and armour headers ("Proc-Type: 4,ENCRYPTED") only: a header merely
        # mentioned in prose stops being a candidate at its first other character. A
        # backslash too: inside a JSON or C string the newlines are escapes ("\\n", a
        # GCP service-account file), each two characters of the same 6000.
        r"(?:(?!-----END )[A-Za-z0-9+/=\s:,.\\-]){16,6000}"
        r"-----END (?:[A-Z0-9]{1,12} ){0,2}PRIVATE KEY(?: BLOCK)?-----",
        "secrets",
        description="PEM/OpenSSH/PGP private-key blocks, header to footer (multi-line, or"
        " one line with escaped newlines inside a JSON string).",
        evidence="-----BEGIN ",
    ),
    PatternSpec(
        "jwt",
        _TOKEN_START + r"eyJ[A-Za-z0-9_-]{8,1024}\.eyJ[A-Za-z0-9_-]{8,4096}"
        r"\.[A-Za-z0-9_-]{0,1024}" + _TOKEN_END,
        "secrets",
        description="JSON Web Tokens: base64url header and payload starting with '{\"'.",
        evidence=r"eyJ[A-Za-z0-9_-]{4}",
    ),
    PatternSpec(
        "anthropic_key",
        _TOKEN_START + r"sk-ant-[a-z]{3,8}[0-9]{2}-[A-Za-z0-9_-]{32,200}" + _TOKEN_END,
        "secrets",
        description="Anthropic API keys (sk-ant-api03-..., sk-ant-admin01-...).",
        evidence="sk-ant-",
    ),
    PatternSpec(
        "openai_key",
        _TOKEN_START + r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}" + _TOKEN_END,
        "secrets",
        description="OpenAI API keys (sk-..., sk-proj-..., sk-svcacct-...).",
        evidence="sk-",
    ),
    PatternSpec(
        "aws_access_key_id",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)"
        r"[A-Z0-9]{16}(?![A-Za-z0-9])",
        "secrets",
        description="AWS access key ids (AKIA..., ASIA..., 20 characters).",
        evidence="A[A-Z]{3}[A-Z0-9]",
    ),
    PatternSpec(
        "github_token",
        _TOKEN_START
        + r"(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})"
        + _TOKEN_END,
        "secrets",
        description="GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_ and fine-grained github_pat_.",
        evidence=r"gh[pousr]_|github_pat_",
    ),
    PatternSpec(
        "slack_token",
        _TOKEN_START + r"(?:xox[baprse]-|xapp-|xoxe\.xox[bp]-)[A-Za-z0-9-]{10,250}" + _TOKEN_END,
        "secrets",
        description="Slack tokens (xoxb-, xoxa-, xoxp-, xoxr-, xoxs-; configuration tokens"
        " xoxe-, xoxe.xoxp-; app-level tokens xapp-).",
        evidence=r"xox[baprse][-.]|xapp-",
    ),
    PatternSpec(
        "stripe_key",
        _TOKEN_START + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}" + _TOKEN_END,
        "secrets",
        description="Stripe secret and restricted keys (sk_live_, rk_live_, *_test_).",
        evidence=r"[sr]k_",
    ),
    PatternSpec(
        "google_api_key",
        _TOKEN_START + r"AIza[0-9A-Za-z_-]{35}" + _TOKEN_END,
        "secrets",
        description="Google API keys (AIza + 35 characters).",
        evidence="AIza",
    ),
    PatternSpec(
        "gitlab_token",
        _TOKEN_START
        + r"gl(?:pat|dt|rt|ptt|ft|imt|oas|cbt|soat|agent)-[A-Za-z0-9_-]{20,64}"
        + _TOKEN_END,
        "secrets",
        description="GitLab tokens (glpat-, gldt-, glrt-, glptt-...).",
        evidence=r"gl[a-z]{2,5}-",
    ),
    PatternSpec(
        "huggingface_token",
        _TOKEN_START + r"hf_[A-Za-z0-9]{30,40}" + _TOKEN_END,
        "secrets",
        description="Hugging Face access tokens (hf_ + 34 characters).",
        evidence="hf_",
    ),
    PatternSpec(
        "npm_token",
        _TOKEN_START + r"npm_[A-Za-z0-9]{36}" + _TOKEN_END,
        "secrets",
        description="npm access tokens (npm_ + 36 characters).",
        evidence="npm_",
    ),
    PatternSpec(
        "pypi_token",
        _TOKEN_START + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1000}" + _TOKEN_END,
        "secrets",
        description="PyPI API tokens (pypi-AgEIcHlwaS5vcmc..., a macaroon for pypi.org).",
        evidence="pypi-AgEI",
    ),
    PatternSpec(
        "webhook_secret",
        _TOKEN_START + r"whsec_[A-Za-z0-9+/=]{24,100}(?![A-Za-z0-9+/=_-])",
        "secrets",
        description="Webhook signing secrets (whsec_: Stripe, Svix, Clerk...).",
        evidence="whsec_",
    ),
    PatternSpec(
        "google_oauth_secret",
        _TOKEN_START + r"GOCSPX-[A-Za-z0-9_-]{28}" + _TOKEN_END,
        "secrets",
        description="Google OAuth client secrets (GOCSPX- + 28 characters).",
        evidence="GOCSPX-",
    ),
    PatternSpec(
        "slack_webhook",
        r"(?<![A-Za-z0-9])https://hooks\.slack\.com/(?:services|workflows|triggers)/"
        r"[A-Za-z0-9+/_-]{20,200}(?![A-Za-z0-9+/_-])",
        "secrets",
        description="Slack incoming-webhook URLs.",
        evidence=r"hooks\.slack\.com/",
    ),
    PatternSpec(
        "aws_secret_access_key",
        # 40 base64 characters right after the name they are given in configs and code
        # (the one-character lookbehind first: a cheap necessary condition, same matches;
        # lazy quantifiers in lookbehinds: see _NOT_AN_ID)
        r"(?<=[:=\"' ])"
        r"(?<=(?<![A-Za-z0-9])(?i:aws_??secret_??access_??key|aws_??secret_??key|secret_??access_??key)"
        r"[\"']??[ ]{0,3}?[:=][ ]{0,3}?[\"']??)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        "secrets",
        description="AWS secret access keys (40 characters after aws_secret_access_key=...).",
        evidence=r"[A-Za-z0-9/+]{8}",
    ),
    PatternSpec(
        "bearer_token",
        r"(?<= )(?<=(?<![A-Za-z])(?i:bearer) )[A-Za-z0-9._~+/-]{20,2048}={0,3}"
        r"(?![A-Za-z0-9._~+/=-])",
        "secrets",
        description="Bearer tokens after 'Bearer ' (Authorization headers, curl commands).",
        evidence=r"[A-Za-z0-9._~+/-]{8}",
    ),
    PatternSpec(
        "connection_string",
        # the password of scheme://user:PASSWORD@host, only that span (the rest is an
        # address, kept readable); before e-mail, which would take PASSWORD@host
        r"(?<=:)(?<=(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,30}?://[^\s:/@]{0,128}?:)"
        r"[^\s/@]{1,256}(?=@[^\s@/:?#])",
        "secrets",
        label="[PASSWORD]",
        validator=url_password_valid,
        description="Passwords in connection strings and URLs (postgres://user:PASSWORD@host),"
        " the password only; placeholders (user:password, ${DB_PASSWORD}) are left.",
        evidence=r"[^\s/@]{4}",
    ),
    PatternSpec(
        "generic_secret",
        # the value after a secret's keyword and an assignment: password = "...",
        # API_KEY=..., "apiKey": "...", client_secret: ...; quoted values may hold spaces
        r"(?<=[=:>\"'][ \t]{0,3}?[\"']??)"
        r"(?:(?<=" + _SECRET_KEY + r"\")[^\"\n]{8,200}(?=\")"
        r"|(?<=" + _SECRET_KEY + r"')[^'\n]{8,200}(?=')"
        r"|(?<=" + _SECRET_KEY + r")[^\s\"'`]{8,200}(?![^\s\"'`]))",
        "secrets",
        label="[SECRET]",
        validator=generic_secret_valid,
        description="Values assigned to a secret's keyword (password, secret, api_key, token,"
        " client_secret...) that look like a secret: 8+ characters, letters and digits or"
        " symbols, >= 3 bits of entropy per character, not a placeholder or code.",
        evidence=r"[^\s\"'`]{8}",
    ),
    PatternSpec(
        "email",
        # Not the user of a URL (ssh://git@host/..., postgres://user:pw@host: a password,
        # the connection_string rule's), and not git's SSH user (git@github.com:owner/
        # repo.git, ssh -T git@github.com): a host to log in to, not a mailbox.
        # (the one-character lookbehind first: a cheap necessary condition)
        r"(?<![\w.%+-])(?!(?<=[/:])(?<=://(?:[^\s:/@]{0,128}?:)??))(?!git@)"
        r"[^\W_][\w.%+-]{0,63}@" + _DOMAIN + r"(?![\w-])",
        "pii",
        description="Email addresses, internationalised (Unicode local part and domain);"
        " not the user of a URL (ssh://user@host) nor git's SSH user (git@host:path).",
        evidence="@",
    ),
    PatternSpec(
        "credit_card",
        # Unbroken, or in the groups cards are printed in: 4-4-4-4(-3) and shorter
        # last groups, 4-6-5 (Amex), 4-6-4 (Diners). Other groupings (a phone number's
        # 3-4-4-3) are not cards even when their digits happen to pass Luhn.
        # Each starts with the first two digits of an issuer range (_IIN, as card_valid
        # checks): a year or an amount (1990 2021 ...) is not even a candidate.
        r"(?<![0-9-])(?:" + _NOT_AN_ID + _IIN + r"[0-9]{11,17}"
        r"|" + _IIN + r"[0-9]{2}(?:[ -][0-9]{4}){2}[ -][0-9]{1,4}(?:[ -][0-9]{1,3})?"
        r"|" + _IIN + r"[0-9]{2}[ -][0-9]{6}[ -][0-9]{4,5})(?![0-9-])",
        "financial",
        validator=card_valid,
        description="Payment cards: 13-19 digits, unbroken or in printed groups, of a known"
        " issuer range (IIN) and length, Luhn-checked.",
        evidence=r"[0-9](?:[ -]?[0-9]){5}",
    ),
    PatternSpec(
        "iban",
        r"(?<![A-Za-z0-9])(?:[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
        r"|[a-z]{2}[0-9]{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?)(?![A-Za-z0-9])",
        "financial",
        validator=iban_valid,
        description="International bank account numbers, mod-97 checked.",
        evidence=r"[A-Za-z]{2}[0-9]{2}",
    ),
    PatternSpec(
        "us_ssn",
        r"(?<![0-9-])(?!000|666|9[0-9]{2})(?:[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}"
        # without dashes only right after the word: "SSN: 123456789", "SSN 123 45 6789"
        # (the one-character lookbehind first: a cheap necessary condition, same matches)
        # or a quoted, assigned or tagged key: {"ssn": "123456789"}, SSN=..., <ssn>...
        r"|(?<=[:# NnRrYy\"'=>])(?<=(?<![A-Za-z])(?i:ssn|social security(?: number)??)"
        r"[\"']??[ ]{0,2}?[:#=>]??[ ]{0,2}?[\"']??)"
        r"[0-9]{3}[ ]?(?!00)[0-9]{2}[ ]?(?!0000)[0-9]{4})(?![0-9-])",
        "pii",
        description="US social security numbers: AAA-GG-SSSS, or undashed after 'SSN'"
        ' (SSN: ..., "ssn": "...", SSN=...; invalid ranges excluded).',
        evidence=r"[0-9]{3}-",
    ),
    PatternSpec(
        "ipv4",
        rf"(?<![0-9.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9]|\.[0-9])",
        "network",
        description="IPv4 addresses in dotted-quad form (not 0.0.0.0, loopback, broadcast).",
        allow=("0.0.0.0", "127.0.0.1", "255.255.255.255", "255.255.255.0"),
        evidence=r"[0-9]\.[0-9]{1,3}\.",
    ),
    PatternSpec(
        "ipv6",
        r"(?<![\w:])(?:"
        rf"(?:{_HEX4}:){{7}}{_HEX4}"
        rf"|(?:{_HEX4}:){{1,7}}:"
        rf"|(?:{_HEX4}:){{1,6}}:{_HEX4}"
        rf"|(?:{_HEX4}:){{1,5}}(?::{_HEX4}){{1,2}}"
        rf"|(?:{_HEX4}:){{1,4}}(?::{_HEX4}){{1,3}}"
        rf"|(?:{_HEX4}:){{1,3}}(?::{_HEX4}){{1,4}}"
        rf"|(?:{_HEX4}:){{1,2}}(?::{_HEX4}){{1,5}}"
        rf"|{_HEX4}:(?::{_HEX4}){{1,6}}"
        rf"|:(?::{_HEX4}){{2,7}}"  # not a slice: xs[::2]
        r")(?![\w:]|\.[0-9])",
        "network",
        description="IPv6 addresses, full and '::'-compressed (not the IPv4-embedded form).",
        allow=("::1",),
        evidence=r":[0-9A-Fa-f]*:",
    ),
    PatternSpec(
        "phone",
        r"(?<![\w+])(?:"
        # E.164 / international: +CC, then up to six more runs of digits (7 to 15 digits
        # in all: the validator) after a separator and/or parentheses; a ")" not right
        # after a one-digit country code, a last run of two digits or more (three after a
        # "("). A separator is never empty, so each run is a whole digit run: glued digits
        # (+442079460958) have one reading, not one per way of splitting them into groups.
        r"\+[1-9][0-9]{0,14}(?:(?:(?<!\+[1-9])\)[ .-]?\(?|[ .-]\(?|\()[0-9]{1,14}){0,6}"
        r"(?<=[0-9]{2})(?<!\([0-9]{1,2}?)"
        # North American (area and exchange codes start with 2-9): (415) 555-2671,
        # 415-555-2671, 415.555.2671, 415 555 2671.
        r"|(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[.-])[2-9][0-9]{2}[.-][0-9]{4}"
        r"|[2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4}"
        # National with a trunk 0: 020 7946 0958, 030-1234567, 07911 123456,
        # 06 12 34 56 78; not a date written 01-15-2024.
        r"|(?![0-9]{2}-[0-9]{2}-(?:[0-9]{4}|[0-9]{2})(?![0-9-]))"
        # not a hex dump: "0010  01 23 45 67 89 ab"
        # (a pair of hex digits with a letter, standing alone: not the end of "see ")
        r"(?<!(?<![0-9A-Za-z])(?:[0-9A-Fa-f][A-Fa-f]|[A-Fa-f][0-9]) )"
        # Pairs after a trunk 0 are a number only as exactly five pairs (06 12 34 56 78);
        # fewer or more pairs are bytes, times, versions. Other groupings: any.
        r"(?:0[1-9](?:[ -][0-9]{2}){4}(?![0-9]|[ -][0-9]{2}(?![0-9]))"
        r"|(?!0[1-9](?:[ -][0-9]{2}){1,8}(?![0-9]))"
        # not a US ZIP+4 after a state code (Boston, MA 02110-1301: every GPL header),
        # nor a range of zero-padded numbers of one width (0100-0199)
        r"(?!(?<=(?<![A-Za-z])[A-Z]{2} )0[0-9]{4}-[0-9]{4}(?![0-9]))"
        r"(?!(?:0[0-9]{3}-0[0-9]{3}|0[0-9]{4}-0[0-9]{4}|0[0-9]{5}-0[0-9]{5})(?![0-9]))"
        r"0[1-9][0-9]{0,4}(?:[ -][0-9]{2,8}){1,4})"
        r"(?! [0-9A-Fa-f]{2}(?![0-9A-Za-z]))"
        # not the head of a longer dashed number (an SSN or id right after it)
        r")(?![\w+]|-[0-9])",
        "pii",
        validator=_phone_digits_ok,
        description="Phone numbers: E.164 (+44 20 7946 0958), North American and European formats.",
        evidence=r"[0-9](?:[^0-9]{0,3}[0-9]){6}",
    ),
)

# Where a built-in can start (a necessary condition, over the character before and the
# character at a position): every pattern but ``private_key`` (which starts with ``-``)
# and the digit-led ones refuses to start right after a letter or digit, no digit-led
# one starts right after a digit (inside a digit run only its first digit is a candidate),
# and the ones that may start right after a letter (cards, SSNs, IPv4) begin with two
# digits or a digit and a dot: in an alphanumeric run (``A1b2...``) a digit between
# letters is no candidate (the character after it is read too: ``\Z``, the end of the
# text searched, keeps a digit whose next character has not arrived a candidate).
# The streaming filter skips the other positions with this one cheap search instead of trying the
# whole alternation there (most positions of prose are inside a word). It must hold for
# every built-in: tests/test_patterns.py checks each of them against it.
BUILTIN_STARTS = r"-|(?<![A-Za-z0-9])|(?<=[A-Za-z])[0-9](?=[0-9.]|\Z)"

# The first character of the built-ins the first-set analysis cannot bound (a negated
# class, a lookahead before the first character): which branches the filter tries at a
# position depends on it. tests/test_patterns.py checks each against its pattern.
BUILTIN_FIRSTS = {"email": r"[^\W_]", "us_ssn": r"[0-9]", "phone": r"[+(0-9]"}

# Where a match of some built-ins can end (a necessary condition over the characters
# around the end, read within the same slice as the match): when a validator rejects a
# match, the filter tries its shorter ends, and skips the ends that fail this before the
# pinned match (on glued digits a phone number's pinned match explores every split of
# the digits into groups). tests/test_redact.py checks each against its pattern.
BUILTIN_ENDS = {
    "phone": r"(?<=[0-9]{2})(?![\w+]|-[0-9])",
    "credit_card": r"(?<=[0-9])(?![0-9-])",
}

# Built-ins whose rejected match can tell that no shorter end at the same start will
# pass the validator either (the filter then skips trying them; same result, cheaper).
# tests/test_redact_review.py checks each against its validator.
BUILTIN_HOPELESS: dict[str, Callable[[str], bool]] = {"credit_card": _card_hopeless}

_BY_NAME = {spec.name: spec for spec in _BUILTINS}
_CATEGORIES = tuple(dict.fromkeys(spec.category for spec in _BUILTINS))


def builtin_patterns(*selectors: str) -> tuple[PatternSpec, ...]:
    """Return built-in patterns by name or category, in library order (all if none given).

    Names: ``private_key``, ``jwt``, ``anthropic_key``, ``openai_key``,
    ``aws_access_key_id``, ``github_token``, ``slack_token``, ``stripe_key``,
    ``google_api_key``, ``email``, ``credit_card``, ``iban``, ``us_ssn``,
    ``ipv4``, ``ipv6``, ``phone``. Categories: ``secrets``, ``pii``,
    ``financial``, ``network``. An unknown selector raises ``ValueError``.

    >>> [p.name for p in builtin_patterns("financial", "email")]
    ['email', 'credit_card', 'iban']
    """
    wanted: set[str] = set()
    for sel in selectors:
        if sel in _BY_NAME:
            wanted.add(sel)
        elif sel in _CATEGORIES:
            wanted.update(s.name for s in _BUILTINS if s.category == sel)
        else:
            raise ValueError(
                f"unknown built-in pattern or category {sel!r}; names: {sorted(_BY_NAME)},"
                f" categories: {list(_CATEGORIES)}"
            )
    if not selectors:
        return _BUILTINS
    return tuple(s for s in _BUILTINS if s.name in wanted)


def is_builtin_selector(name: str) -> bool:
    """True when ``name`` names a built-in pattern or category."""
    return name in _BY_NAME or name in _CATEGORIES


# A string that may have been meant as a built-in name: a bare lowercase identifier.
_NAME_LIKE = re.compile(r"[a-z][a-z0-9_]*")


def closest_builtin(text: str) -> str | None:
    """The built-in name or category ``text`` looks like a misspelling of, if any.

    Only a bare lowercase identifier that is not itself a selector is a
    candidate (``"emial"`` -> ``"email"``, ``"secret"`` -> ``"secrets"``);
    ``difflib`` decides what is close.

    >>> closest_builtin("emial"), closest_builtin("password"), closest_builtin("e-mail")
    ('email', None, None)
    """
    if not _NAME_LIKE.fullmatch(text) or is_builtin_selector(text):
        return None
    close = difflib.get_close_matches(text, [*_BY_NAME, *_CATEGORIES], n=1, cutoff=0.75)
    return close[0] if close else None
