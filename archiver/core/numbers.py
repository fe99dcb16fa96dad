"""Phone numbers in the forms people write them, reduced to one form for matching. Pure.

The PBX stores a number as its users dialled it (``0986123456``), an auditor asks for it as
it is written elsewhere (``+84 986 123 456``, ``84-986-123-456``). Both reduce to the national
significant number (``986123456``); a foreign number keeps its country code (``+14155550100``),
an extension (``101``) stays as it is.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-.()/]")
NATIONAL_MIN_DIGITS = 8  # shorter numbers are extensions or service codes: never rewritten


def canonical_number(text: str, country_code: str = "84") -> str:
    """The form *text* is matched in: the same for every common way of writing one number.

    Text that is not a number (a SIP URI, a name) is matched as it is, in lower case.
    """
    compact = _SEPARATORS.sub("", text.strip())
    international = compact.startswith(("+", "00"))
    digits = compact[1:] if compact.startswith("+") else compact[2:] if compact.startswith("00") else compact
    if not digits.isdigit():
        return text.strip().lower()
    national_len = len(digits) - len(country_code)
    national = digits.startswith(country_code) and national_len >= NATIONAL_MIN_DIGITS
    if international:
        return digits[len(country_code) :] if national else "+" + digits
    if national:
        return digits[len(country_code) :]
    if digits.startswith("0") and len(digits) > NATIONAL_MIN_DIGITS:
        return digits[1:]  # the trunk prefix of a national number
    return digits


def same_number(a: str | None, b: str, country_code: str = "84") -> bool:
    """Whether *a* (as the PBX stored it; None: no number) is the number *b*, in any form."""
    return a is not None and canonical_number(a, country_code) == canonical_number(b, country_code)


def looks_numeric(value: str) -> bool:
    """Whether a spreadsheet would read *value* as a number (and drop its leading zero or ``+``)."""
    return bool(re.fullmatch(r"\+?\d+", value))
