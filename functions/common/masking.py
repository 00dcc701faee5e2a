"""Phone numbers are personal data: logs show only enough of one to tell two apart."""

VISIBLE_DIGITS = 4


def mask_phone(number: str | None) -> str:
    """`16505551234` -> `*******1234`; short or empty values are masked entirely."""
    if not number:
        return "<none>"
    if len(number) <= VISIBLE_DIGITS * 2:
        return "*" * len(number)
    return "*" * (len(number) - VISIBLE_DIGITS) + number[-VISIBLE_DIGITS:]
