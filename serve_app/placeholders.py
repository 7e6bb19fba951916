"""Recognise secrets that were copied from documentation instead of being set for real."""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(
    r"^(|changeme|change-me|change_me|secret|password|token|xxx+|\.\.\.|todo|none|null)$"
    r"|^your[-_]|your-account-id|^<.*>$|^\$\{.*\}$|placeholder|replace[-_]?me",
    re.IGNORECASE,
)


def is_placeholder(value: str | None) -> bool:
    """True for unset values and for the README's sample values ('your-r2-secret-key', '<token>')."""
    return value is None or bool(_PLACEHOLDER.search(value.strip()))
