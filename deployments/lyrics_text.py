"""Prompts for the lyrics/tags LLM and the repair of what it answers.

LLM output is untrusted: small models add preambles, forget section tags, loop, or answer in prose.
Everything here is pure Python so it is tested without a model, and every parser falls back to
something usable built from the request itself.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

Chat = list[dict[str, str]]

MAX_TAGS = 12
MIN_TAGS = 3
MIN_CATEGORIES, MAX_CATEGORIES = 3, 5
MAX_LYRIC_LINES = 64
MAX_LYRIC_CHARS = 3000
MAX_TITLE_CHARS = 60

SECTION_NAMES = ("verse", "chorus", "bridge", "intro", "outro", "pre-chorus")
_SECTION_ALIASES = {
    "verse": "verse",
    "chorus": "chorus",
    "refrain": "chorus",
    "hook": "chorus",
    "bridge": "bridge",
    "intro": "intro",
    "outro": "outro",
    "pre-chorus": "pre-chorus",
    "prechorus": "pre-chorus",
    "pre chorus": "pre-chorus",
    "post-chorus": "chorus",
    "interlude": "bridge",
    "breakdown": "bridge",
    "coda": "outro",
    "ending": "outro",
}
# A line that is only a section marker: "[Verse 1]", "**Chorus:**", "(Bridge)", "Verse 2 -", "## Outro".
_SECTION_LINE = re.compile(
    r"^\s*(?:#+\s*)?[\[\(\*_]*\s*(?P<name>pre[\s-]?chorus|post-chorus|verse|chorus|refrain|hook|bridge|"
    r"intro|outro|interlude|breakdown|coda|ending)\b[^\]\)\n]{0,20}?[\]\)\*_:\-–.\s]*$",
    re.IGNORECASE,
)
_VOCAL_WORDS = re.compile(
    r"\b(vocals?|voice|singer|singing|sung|rap|rapper|rapping|choir|a cappella|acapella|vocalist|"
    r"male|female|duet|humming)\b",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\s*(sure|okay|ok|certainly|of course|here(?:'s| is| are)|below|as requested|i (?:have|'ve)|"
    r"this song|these are|tags?\s*:|lyrics?\s*:|song lyrics|the lyrics)\b",
    re.IGNORECASE,
)
_COMMENTARY = re.compile(
    r"^\s*(note|explanation|i hope|hope you|feel free|let me know|this song|these lyrics|the song|"
    r"in this song|enjoy|\(?end\)?$)",
    re.IGNORECASE,
)
_BPM = re.compile(r"\b(\d{2,3})\s*bpm\b", re.IGNORECASE)
_KEY = re.compile(r"\b([A-G](?:#|b|♯|♭)?)\s*(major|minor|maj|min)\b", re.IGNORECASE)

GENRES = (
    "pop", "rock", "hip hop", "hip-hop", "rap", "trap", "jazz", "blues", "country", "folk", "metal",
    "punk", "funk", "soul", "r&b", "reggae", "reggaeton", "edm", "house", "techno", "trance",
    "dubstep", "drum and bass", "disco", "electronic", "ambient", "lofi", "lo-fi", "classical",
    "orchestral", "cinematic", "gospel", "latin", "salsa", "bossa nova", "k-pop", "j-pop", "indie",
    "synthwave", "grunge", "ska", "afrobeat", "dance", "acoustic", "chillout", "soundtrack", "opera",
    "flamenco", "tango", "samba", "ballad", "lullaby",
)
INSTRUMENTS = (
    "piano", "guitar", "acoustic guitar", "electric guitar", "bass", "drums", "synth", "synthesizer",
    "violin", "cello", "strings", "saxophone", "trumpet", "flute", "harp", "organ", "ukulele",
    "banjo", "808", "percussion", "brass", "choir", "harmonica", "accordion", "sitar", "koto",
)
MOODS = (
    "happy", "sad", "upbeat", "energetic", "calm", "chill", "melancholic", "romantic", "dark",
    "uplifting", "dreamy", "nostalgic", "aggressive", "peaceful", "epic", "hopeful", "emotional",
    "relaxing", "groovy", "mellow", "joyful", "angry", "playful", "mysterious",
)

_TAGS_EXAMPLE_USER = "Song description: a bittersweet acoustic love song about a summer that ended"
_TAGS_EXAMPLE_ANSWER = "acoustic pop, female vocal, acoustic guitar, soft piano, bittersweet, nostalgic, 92 bpm, G major"
_INSTR_EXAMPLE_USER = "Song description: a calm piano piece for studying late at night (instrumental)"
_INSTR_EXAMPLE_ANSWER = "lofi, instrumental, piano, soft drums, vinyl crackle, calm, relaxing, 75 bpm, C major"
_LYRICS_EXAMPLE_USER = "Write song lyrics about: a road trip with old friends"
_LYRICS_EXAMPLE_ANSWER = (
    "[verse]\nWindows down and the radio loud\nWe left the city and the heavy crowd\n"
    "Maps in the glovebox we never use\nNothing to win and nothing to lose\n\n"
    "[chorus]\nDrive on, drive on, under open skies\nOld friends singing with the sun in our eyes\n\n"
    "[verse]\nGas station coffee and a tank half full\nStories we tell that are mostly untrue\n\n"
    "[bridge]\nWhen the road runs out we will find our way\nBack to the start of another day\n\n"
    "[chorus]\nDrive on, drive on, under open skies\nOld friends singing with the sun in our eyes"
)
_META_EXAMPLE_USER = "Song: acoustic pop, female vocal, nostalgic. About: a summer that ended"
_META_EXAMPLE_ANSWER = "Title: Last Days of July\nCategories: Pop, Acoustic, Love Song, Nostalgic"


def tags_chat(description: str, instrumental: bool) -> Chat:
    rule = (
        "The song is instrumental: include the tag 'instrumental' and no vocal tags."
        if instrumental
        else "Include one vocal tag such as 'male vocal' or 'female vocal'."
    )
    return [
        {
            "role": "system",
            "content": "You are a music producer. Answer with one line of 6 to 10 short comma-separated "
            "music tags: genre, vocals, instruments, mood, tempo in bpm, key. No other text. " + rule,
        },
        {"role": "user", "content": _INSTR_EXAMPLE_USER if instrumental else _TAGS_EXAMPLE_USER},
        {"role": "assistant", "content": _INSTR_EXAMPLE_ANSWER if instrumental else _TAGS_EXAMPLE_ANSWER},
        {"role": "user", "content": f"Song description: {description}" + (" (instrumental)" if instrumental else "")},
    ]


def lyrics_chat(subject: str) -> Chat:
    return [
        {
            "role": "system",
            "content": "You are a songwriter. Write short song lyrics with the section tags [verse], "
            "[chorus] and [bridge] on their own lines. Output only the lyrics.",
        },
        {"role": "user", "content": _LYRICS_EXAMPLE_USER},
        {"role": "assistant", "content": _LYRICS_EXAMPLE_ANSWER},
        {"role": "user", "content": f"Write song lyrics about: {subject}"},
    ]


def meta_chat(description: str, tags: list[str]) -> Chat:
    return [
        {
            "role": "system",
            "content": "You name songs. Answer with exactly two lines: 'Title: <short title>' and "
            "'Categories: <3 to 5 comma-separated music categories>'.",
        },
        {"role": "user", "content": _META_EXAMPLE_USER},
        {"role": "assistant", "content": _META_EXAMPLE_ANSWER},
        {"role": "user", "content": (f"Song: {', '.join(tags[:8])}. " if tags else "") + f"About: {description}"},
    ]


# ---------------------------------------------------------------- helpers


def _clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text or "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"<\|?[a-z_]+\|?>", "", text)  # stray special tokens
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    return text.strip()


def _strip_md(line: str) -> str:
    line = re.sub(r"[*_`]{1,3}", "", line)
    line = re.sub(r"^\s*(?:[-•>]|\d+[.)])\s+", "", line)
    return line.strip().strip('"“”').strip()


def _dedupe(items: list[str], key=str.lower) -> list[str]:
    seen, out = set(), []
    for it in items:
        k = key(it)
        if k and k not in seen:
            seen.add(k)
            out.append(it)
    return out


def _find_terms(text: str, vocab: tuple[str, ...]) -> list[str]:
    low = text.lower()
    return [t for t in vocab if re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", low)]


def is_vocal_tag(tag: str) -> bool:
    return bool(_VOCAL_WORDS.search(tag))


# ---------------------------------------------------------------- tags


def fallback_tags(description: str, instrumental: bool) -> list[str]:
    """Tags mined from the description itself, for when the model's answer is unusable."""
    tags = _find_terms(description, GENRES) or ["pop"]
    tags += ["instrumental"] if instrumental else []
    tags += _find_terms(description, INSTRUMENTS) or ["piano", "drums"]
    tags += _find_terms(description, MOODS) or ["melodic"]
    if m := _BPM.search(description):
        tags.append(f"{m.group(1)} bpm")
    if m := _KEY.search(description):
        tags.append(f"{m.group(1)} {m.group(2).lower()}")
    return tags


def _plausible_tag(t: str) -> bool:
    """Drops the junk small models emit: glued words, stray numbers, tempos no one plays."""
    if m := re.fullmatch(r"(\d{2,3})\s*bpm", t):
        return 40 <= int(m.group(1)) <= 220
    if re.search(r"\d", t) and not re.fullmatch(r"(808s?|\d0s|\d{2}s music|[a-g][#b]? (major|minor))", t):
        return False
    if any(len(w) > 14 for w in t.split()):
        return False
    return bool(re.search(r"[^\W\d_]", t))


def parse_tags(text: str, description: str = "", instrumental: bool = False, truncated: bool = False) -> list[str]:
    """Comma-separated tags out of whatever the model said; vocal tags dropped for instrumentals."""
    text = _clean_text(text)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    # Prefer the first line that looks like a tag list; drop "Here are the tags:" preambles.
    body = next((ln for ln in lines if ln.count(",") >= 2), " , ".join(lines))
    body = re.sub(r"^[^:]{0,40}:\s*", "", body) if ":" in body[:42] else body
    raw = re.split(r"[,;\n|#]+", body)
    if truncated and len(raw) > 1:
        raw = raw[:-1]  # the budget cut the last tag short
    tags = []
    for t in raw:
        t = _strip_md(t).strip(" .!-").lower()
        t = re.sub(r"\s+", " ", t)
        if not t or len(t) > 32 or len(t.split()) > 4 or _PREAMBLE.match(t):
            continue
        if not _plausible_tag(t):
            continue
        tags.append(t)
    if len(_dedupe(tags)) < MIN_TAGS:
        tags = tags + fallback_tags(description, instrumental)
    return finalize_tags(tags, instrumental)


def finalize_tags(tags: list[str], instrumental: bool) -> list[str]:
    tags = [t.strip().lower() for t in tags if t and t.strip()]
    if instrumental:
        tags = [t for t in tags if not is_vocal_tag(t) and t != "instrumental"]
        tags.insert(min(1, len(tags)), "instrumental")
    return _dedupe(tags)[:MAX_TAGS]


def normalize_user_tags(prompt: str, instrumental: bool) -> list[str]:
    """A user's own tag string keeps its order and words; it is only split, deduped and capped."""
    parts = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"[,\n]+", prompt)]
    return finalize_tags([p for p in parts if p], instrumental)


# ---------------------------------------------------------------- lyrics


@dataclass
class Section:
    name: str
    lines: list[str]


def _section_name(line: str) -> str | None:
    m = _SECTION_LINE.match(line)
    if not m:
        return None
    name = m.group("name").lower().replace("  ", " ")
    return _SECTION_ALIASES.get(name, _SECTION_ALIASES.get(name.replace("-", " "), "verse"))


def _split_sections(text: str) -> tuple[list[Section], bool]:
    """Sections from the text; the flag says whether the model marked any itself."""
    sections: list[Section] = []
    marked = False
    current: Section | None = None
    for raw in text.split("\n"):
        name = _section_name(_strip_md(raw)) if raw.strip() else None
        if name:
            marked = True
            current = Section(name, [])
            sections.append(current)
            continue
        line = _strip_md(raw)
        if not line:
            if current is not None and current.lines and not marked:
                current = None  # a blank line ends an unmarked stanza
            continue
        if current is None:
            current = Section("", [])
            sections.append(current)
        current.lines.append(line)
    return [s for s in sections if s.lines], marked


def _is_lyric_line(line: str) -> bool:
    if _PREAMBLE.match(line) or _COMMENTARY.match(line):
        return False
    if re.fullmatch(r"\(.*\)", line):  # stage directions: "(laughs)", "(softly)"
        return False
    if re.match(r"^\s*title\s*:", line, re.IGNORECASE):
        return False
    return bool(re.search(r"\w", line))


def _singable(line: str, width: int = 64) -> list[str]:
    """Prose sentences become lyric lines: split long lines at punctuation, then at spaces."""
    if len(line) <= width:
        return [line]
    out, cur = [], ""
    for piece in re.split(r"(?<=[,.;!?…])\s+", line):
        while len(piece) > width:
            cut = piece.rfind(" ", 0, width)
            cut = cut if cut > width // 3 else width
            out.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if cur and len(cur) + 1 + len(piece) > width:
            out.append(cur)
            cur = piece
        else:
            cur = f"{cur} {piece}".strip()
    if cur:
        out.append(cur)
    return [ln.rstrip(",;") for ln in out if ln]


def _label_unmarked(sections: list[Section]) -> None:
    """Give unlabeled stanzas names: a repeated stanza is the chorus, else verse/chorus/verse/bridge."""
    texts = ["\n".join(s.lines).lower() for s in sections]
    repeated = {t for t in texts if texts.count(t) > 1}
    pattern = ["verse", "chorus", "verse", "bridge", "chorus"]
    for i, s in enumerate(sections):
        if s.name:
            continue
        if repeated:
            s.name = "chorus" if texts[i] in repeated else "verse"
        else:
            s.name = pattern[i % len(pattern)] if len(sections) > 1 else "verse"


def _chunk(lines: list[str], size: int = 4) -> list[Section]:
    return [Section("", lines[i : i + size]) for i in range(0, len(lines), size)]


def fallback_lyrics(subject: str) -> str:
    """Simple singable lyrics from the subject, for when the model produced nothing usable."""
    words = re.sub(r"[^\w\s'-]", " ", subject).split()
    topic = " ".join(words[:8]) or "the music"
    return (
        f"[verse]\nI have a story about {topic}\nIt stays with me through night and day\n"
        f"Every moment, every memory\nShows me the way\n\n"
        f"[chorus]\nSing it loud, {topic}\nLet it carry us away\nSing it loud, sing it proud\nHere we stay\n\n"
        f"[bridge]\nWhen the lights go low\nWe will still know\n\n"
        f"[chorus]\nSing it loud, {topic}\nLet it carry us away"
    )


def parse_lyrics(text: str, subject: str = "", truncated: bool = False) -> str:
    """Sectioned lyrics ([verse]/[chorus]/[bridge]...) out of the model's answer, or a fallback."""
    text = _clean_text(text)
    if truncated:  # the budget cut the last line (or sentence) mid-word
        text = text.rsplit("\n", 1)[0] if "\n" in text else re.sub(r"(?<=[.!?,;])[^.!?,;]*$", "", text)
    sections, marked = _split_sections(text)
    # Drop preamble/commentary lines and stop at the first commentary after lyrics started.
    cleaned: list[Section] = []
    for s in sections:
        lines = [part for ln in s.lines if _is_lyric_line(ln) for part in _singable(ln)]
        # Collapse loops: a line may repeat at most twice in a row.
        out: list[str] = []
        for ln in lines:
            if len(out) >= 2 and out[-1].lower() == ln.lower() == out[-2].lower():
                continue
            out.append(ln)
        if out:
            cleaned.append(Section(s.name, out))
    if not marked and len(cleaned) == 1 and len(cleaned[0].lines) >= 4:
        n = len(cleaned[0].lines)  # one unbroken block: cut it into stanzas so it gets a chorus
        cleaned = _chunk(cleaned[0].lines, 4 if n > 8 else (n + 1) // 2)
    _label_unmarked(cleaned)
    # A stanza repeated more than twice is a loop, not a chorus.
    seen: dict[str, int] = {}
    final: list[Section] = []
    for s in cleaned:
        key = "\n".join(s.lines).lower()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 2:
            final.append(s)
    total = sum(len(s.lines) for s in final)
    if total < 4 or len({ln.lower() for s in final for ln in s.lines}) < 3:
        return fallback_lyrics(subject)
    if not any(s.name == "chorus" for s in final) and len(final) > 1:
        final[1].name = "chorus"
    out_lines: list[str] = []
    for s in final:
        if len(out_lines) + len(s.lines) + 1 > MAX_LYRIC_LINES:
            break
        out_lines += [f"[{s.name}]", *s.lines, ""]
    lyrics = "\n".join(out_lines).strip()
    if len(lyrics) > MAX_LYRIC_CHARS:
        lyrics = lyrics[:MAX_LYRIC_CHARS].rsplit("\n", 1)[0]
    return lyrics


def normalize_user_lyrics(lyrics: str) -> str:
    """A user's own lyrics: keep their words, repair the section tags ACE-Step expects."""
    text = _clean_text(lyrics)
    sections, marked = _split_sections(text)
    if not sections:
        return ""
    if not marked:
        _label_unmarked(sections)
    else:
        for s in sections:
            s.name = s.name or "verse"
    return "\n\n".join(f"[{s.name}]\n" + "\n".join(s.lines) for s in sections)


# ---------------------------------------------------------------- title and categories


def fallback_title(description: str, lyrics: str = "") -> str:
    for line in lyrics.split("\n"):
        if line.strip() and not line.startswith("["):
            words = line.split()[:5]
            return " ".join(words).strip(",.;:!?").title()[:MAX_TITLE_CHARS] or "Untitled"
    words = re.sub(r"[^\w\s'-]", " ", description).split()[:4]
    return " ".join(words).title()[:MAX_TITLE_CHARS] or "Untitled"


def fallback_categories(tags: list[str], description: str) -> list[str]:
    cats = _find_terms(" , ".join(tags) + " " + description, GENRES)
    cats += [t for t in tags if not is_vocal_tag(t) and not _BPM.search(t) and not _KEY.search(t)]
    cats += _find_terms(description, MOODS) + ["Music", "Original", "Song"]
    return cats


def parse_meta(text: str, description: str, tags: list[str], lyrics: str = "") -> tuple[str, list[str]]:
    """(title, 3-5 categories) from 'Title: ...' / 'Categories: ...' answers, with fallbacks."""
    text = _clean_text(text)
    title = ""
    cats: list[str] = []
    for line in text.split("\n"):
        line = _strip_md(line)
        if m := re.match(r"^\s*(?:song\s+)?title\s*[:\-]\s*(.+)$", line, re.IGNORECASE):
            title = title or m.group(1)
        elif m := re.match(r"^\s*(?:categories|category|genres?)\s*[:\-]\s*(.+)$", line, re.IGNORECASE):
            cats += re.split(r"[,;/|]+", m.group(1))
    title = re.sub(r"\s+", " ", title.strip().strip('"“”\'*.').strip())[:MAX_TITLE_CHARS]
    if not title or len(title.split()) > 10:
        title = fallback_title(description, lyrics)
    cats = [c for c in (_strip_md(c).strip(" .") for c in cats) if c and len(c) <= 30 and len(c.split()) <= 3]
    cats = _dedupe(cats)
    if len(cats) < MIN_CATEGORIES:
        cats = _dedupe(cats + fallback_categories(tags, description))
    return title, [_title_case(c) for c in cats[:MAX_CATEGORIES]]


def _title_case(s: str) -> str:
    return " ".join(w if w.isupper() and len(w) > 1 else w[:1].upper() + w[1:] for w in s.split())


# ---------------------------------------------------------------- language


def guess_language(text: str) -> str:
    """ACE-Step's vocal_language from the lyrics' script (Latin scripts default to English)."""
    counts = {"zh": 0, "ja": 0, "ko": 0, "ru": 0, "ar": 0, "hi": 0}
    for ch in text:
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF:
            counts["ja"] += 1
        elif 0x4E00 <= o <= 0x9FFF:
            counts["zh"] += 1
        elif 0xAC00 <= o <= 0xD7AF:
            counts["ko"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["ru"] += 1
        elif 0x0600 <= o <= 0x06FF:
            counts["ar"] += 1
        elif 0x0900 <= o <= 0x097F:
            counts["hi"] += 1
    if counts["ja"]:
        return "ja"
    best = max(counts, key=counts.get)
    return best if counts[best] >= 2 else "en"
