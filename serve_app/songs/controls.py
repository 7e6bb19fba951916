"""Musical controls the LLM may propose in its tags ("120 bpm", "A minor"): read them out so the
music model gets them as controls, not only as words. The caller's explicit fields always win."""

from __future__ import annotations

import re
from typing import Any

from serve_app.vocabulary import KEYSCALES, MAX_BPM, MIN_BPM

_BPM = re.compile(r"^\s*(\d{2,3})\s*(?:bpm|beats per minute)\s*$", re.IGNORECASE)
_KEY = re.compile(r"^\s*(?:in\s+)?(?:the\s+)?(?:key\s+of\s+)?([A-Ga-g])\s*([#♯b♭])?\s*(major|minor|maj|min)\s*(?:key)?\s*$",
                  re.IGNORECASE)
_KEYSCALE_BY_LOWER = {k.lower(): k for k in KEYSCALES}


def proposed_controls(tags: list[str]) -> dict[str, Any]:
    """bpm and keyscale found in tags, each the first valid one (nothing else is guessed)."""
    found: dict[str, Any] = {}
    for tag in tags:
        if "bpm" not in found and (m := _BPM.match(tag)):
            bpm = int(m.group(1))
            if MIN_BPM <= bpm <= MAX_BPM:
                found["bpm"] = bpm
        if "keyscale" not in found and (m := _KEY.match(tag)):
            accidental = {"♯": "#", "♭": "b"}.get(m.group(2) or "", m.group(2) or "")
            mode = "major" if m.group(3).lower().startswith("maj") else "minor"
            key = _KEYSCALE_BY_LOWER.get(f"{m.group(1).upper()}{accidental.lower()} {mode}".lower())
            if key:
                found["keyscale"] = key
    return found
