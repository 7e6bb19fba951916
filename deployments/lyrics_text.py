"""Prompts for the lyrics/tags LLM and the repair of what it answers.

LLM output is untrusted: small models add preambles, forget section tags, loop, or answer in prose.
Everything here is pure Python so it is tested without a model, and every parser falls back to
something usable built from the request itself.

Lyrics contract (held by tests/unit/deployments/test_lyrics_properties.py):

* Section tags. A line that is *only* a section marker, in any usual spelling ("[Verse 1]",
  "(Chorus)", "Chorus:", "**Bridge**", "## Outro", "[pre-chorus]", "[Chorus x2]",
  "[Verse 2: Artist]"), becomes the canonical tag "[verse]", "[chorus]", "[bridge]", "[intro]",
  "[outro]" or "[pre-chorus]". A line that only *begins* with a section word and goes on with
  other words ("Bridge over troubled water", "Chorus girls are dancing") is a lyric line.
* User lyrics (`normalize_user_lyrics`) are sung as written: every non-tag line comes out
  character for character and in order. The only edits are: Unicode NFC, CR LF -> LF, control
  characters other than tab and a leading byte-order mark removed, each line trimmed, runs of
  blank lines collapsed to one. Tags are repaired as above; lines before the first tag get "[verse]"; text with no tags
  at all gets the default structure tags on its blank-line stanzas (verse/chorus/...). User
  lines are never wrapped, unwrapped, unquoted or de-bulleted.
* LLM answers (`parse_lyrics`) keep every lyric line, in order, with its words. What may go:
  preamble lines before the lyrics ("Sure! Here is a song about the sea:", "Title: ...", a
  markdown heading or a bold title line), commentary after the last lyric and the last tag ("I hope you enjoy...",
  "Note: ..."), code fences, markdown around tags, bullets and whole-line emphasis or quotes
  around a line, punctuation-only separator lines, parenthesised stage directions made only of
  direction words ("(laughs)", "(x2)"), and degenerate loops (a line more than 4 times in a row
  is cut to 2; a stanza seen more than 4 times keeps its first 4). A truncated answer loses only
  its last, cut-off line (a one-line answer: only its unfinished last clause). Caps
  (MAX_LYRIC_LINES, MAX_LYRIC_CHARS) cut the end, never the middle. The canned fallback is used
  only when no lyric line is left.
* Wrapping (`wrap_line`, LLM lines only): a line over 64 characters is cut only at a run of
  spaces or right after punctuation; without spaces (Chinese, Japanese) only after punctuation
  such as ，。！？、；：… next to CJK text, never mid-word. Pieces keep every character in order:
  joined with the removed spaces (or nothing, after punctuation) they give the line back. A line
  with no such place stays whole.
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


# A section marker line: the name, then optional numbering/repeat marks ("1", "II", "x2", "(repeat)").
_SECTION_NAME = (
    r"(?P<name>pre[\s-]?chorus|post[\s-]?chorus|verse|chorus|refrain|hook|bridge|intro|outro|interlude|"
    r"breakdown|coda|ending)(?![^\W\d_])"
)
_SECTION_QUAL = (
    r"(?:\s*(?:#?\d+|[ivx]{1,4}|one|two|three|four|five|six|first|second|third|fourth|final|last|again|"
    r"repeat|reprise|[x×]\s*\d+|\d+\s*[x×]|\(\s*(?:[x×]\s*\d+|\d+\s*[x×]|repeat|again|\d+)\s*\))(?![^\W\d_]))*"
)
_SECTION_LINE = re.compile(
    r"^(?:#{1,6}\s*)?(?P<em>\*\*|\*|__|_)?\s*(?:"
    rf"\[\s*(?:\*\*|\*)?\s*{_SECTION_NAME}{_SECTION_QUAL}(?:\s*[:\-–—]\s*[^\[\]]{{0,40}}?)?\s*(?:\*\*|\*)?\s*\]"
    rf"|\(\s*{_SECTION_NAME.replace('name', 'name2')}{_SECTION_QUAL}(?:\s*[:\-–—]\s*[^()]{{0,40}}?)?\s*\)"
    rf"|[{{<]\s*{_SECTION_NAME.replace('name', 'name3')}{_SECTION_QUAL}\s*[}}>]"
    rf"|{_SECTION_NAME.replace('name', 'name4')}{_SECTION_QUAL}"
    r")\s*[:\-–—.]?\s*(?(em)(?:\*\*|\*|__|_))\s*[:\-–—.]?\s*$",
    re.IGNORECASE,
)
_SECTION_ALIASES = {
    "verse": "verse",
    "chorus": "chorus",
    "refrain": "chorus",
    "hook": "chorus",
    "post-chorus": "chorus",
    "postchorus": "chorus",
    "bridge": "bridge",
    "interlude": "bridge",
    "breakdown": "bridge",
    "intro": "intro",
    "outro": "outro",
    "coda": "outro",
    "ending": "outro",
    "pre-chorus": "pre-chorus",
    "prechorus": "pre-chorus",
}
# Preamble: only looked for before the first lyric line of an LLM answer.
_LYRICS_PREAMBLE = re.compile(
    r"^(?:"
    r"(?:sure|okay|ok|certainly|of\s+course|absolutely|alright|all\s+right|great|here\s+you\s+go|no\s+problem)"
    r"\s*[!.,:]*\s*$"
    r"|(?:sure|okay|ok|certainly|of\s+course|absolutely|alright|great|no\s+problem)\b\W*(?:here|below|"
    r"i(?:'ve|’ve|\s+have)\s+(?:written|composed|created|crafted|made|come)|i\s+(?:wrote|composed|created|crafted)|"
    r"this\s+is|these\s+are)\b"
    r"|here(?:'s|’s|\s+is|\s+are)\s+(?:a|an|the|some|my|your)\b.*\b(?:songs?|lyrics?|verses?|poem|version|draft|"
    r"attempt|take)\b"
    r"|(?:below|above)\s+(?:is|are)\b"
    r"|as\s+requested\b"
    r"|i(?:'ve|’ve|\s+have)\s+(?:written|composed|created|crafted|come\s+up\s+with)\b"
    r"|i\s+(?:wrote|composed|created|crafted)\s+(?:a|an|the|some|you)\b.*\b(?:songs?|lyrics?|poem)\b"
    r"|(?:song\s+)?(?:lyrics?|title|tags?)\s*[:\-–]"
    r"|#{1,6}\s.*"
    r"|.*\b(?:songs?|lyrics?|poem)\b.*:\s*$"
    r")",
    re.IGNORECASE,
)
# Commentary: only looked for after the last tag and the first lyric line of an LLM answer.
_LYRICS_COMMENTARY = re.compile(
    r"^(?:"
    r"(?:\*\*)?(?:notes?|explanation|translation|rhyme\s+scheme|structure|word\s+count|chords?)\s*(?:\*\*)?\s*[:\-–]"
    r"|(?:i\s+)?hope\s+(?:you|this|these|that|it)\b.*\b(?:enjoy|enjoyed|like|liked|helps|help|works|fits|suits|"
    r"meets|resonates|captures)\b"
    r"|feel\s+free\b"
    r"|let\s+me\s+know\s+if\s+(?:you(?:'d|’d|\s+would)?\s+(?:like|want)|there|this|any)\b"
    r"|(?:if\s+you(?:'d|’d|\s+would)\s+like|would\s+you\s+like|do\s+you\s+want|want\s+me\s+to)\b"
    r"|enjoy\s*[!.]*$"
    r"|enjoy\s+(?:the|this|your|these|my)\s+(?:song|lyrics|tune|track|piece)\b"
    r"|(?:this|the|these|in\s+this|my)\s+(?:song|lyrics?|piece|track)\s+(?:captures?|explores?|tells?|describes?|"
    r"conveys?|reflects?|celebrates?|uses?|features?|(?:is|are)\s+(?:about|meant|written|designed|inspired)|"
    r"was\s+(?:written|inspired)|should)\b"
    r"|\(?\s*(?:the\s+)?end(?:\s+of\s+(?:the\s+)?(?:song|lyrics))?\s*\)?[.!]*$"
    r")",
    re.IGNORECASE,
)
# Stage directions: a parenthesised line made only of these words is not sung.
_DIRECTION_LINE = re.compile(
    r"^\(\s*(?:(?:softly|gently|quietly|loudly|slowly|spoken|whisper(?:s|ed|ing)?|laugh(?:s|ing)?|sigh(?:s|ing)?|"
    r"hum(?:s|ming)?|breath(?:e|es|ing)?|pause|silence|instrumental(?:\s+break)?|(?:guitar\s+|piano\s+|sax\s+|"
    r"drum\s+)?solo|fades?(?:\s+out)?|repeat(?:\s+(?:chorus|verse))?|x\s*\d+|\d+\s*x|music|beat\s+drops?|"
    r"applause|clapping|cheering|ad[\s-]?libs?)\s*[,.!;]?\s*)+\)$",
    re.IGNORECASE,
)

WRAP_WIDTH = 64
# Places a line with no space there may still be wrapped: right after these, next to CJK text.
_WRAP_PUNCT = frozenset(",.!?;:…‥，。！？、；：」』）】》〉〕〗～")


@dataclass
class Section:
    name: str
    lines: list[str]


def _section_name(line: str) -> str | None:
    """The canonical section name when the whole line is a section marker, else None."""
    m = _SECTION_LINE.match(line.strip())
    if not m:
        return None
    name = next(g for g in (m.group("name"), m.group("name2"), m.group("name3"), m.group("name4")) if g)
    return _SECTION_ALIASES.get(re.sub(r"[\s-]+", "-", name.lower()), "verse")


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF
            or 0xF900 <= o <= 0xFAFF or 0xAC00 <= o <= 0xD7AF or 0xFF66 <= o <= 0xFF9F)


def _wrap_points(s: str) -> list[tuple[int, int, bool]]:
    """(piece end, rest start, after punctuation) for every place `s` may be wrapped."""
    points = [(m.start(), m.end(), s[m.start() - 1] in _WRAP_PUNCT)
              for m in re.finditer(r"\s+", s) if 0 < m.start() and m.end() < len(s)]
    for i in range(len(s) - 1):
        c, nxt = s[i], s[i + 1]
        if c in _WRAP_PUNCT and not nxt.isspace() and nxt not in _WRAP_PUNCT and (
                _is_cjk(nxt) or (i > 0 and _is_cjk(s[i - 1]))):
            points.append((i + 1, i + 1, True))
    return sorted(points)


def wrap_line(line: str, width: int = WRAP_WIDTH) -> list[str]:
    """A long line as singable pieces, cut at spaces or after punctuation only (see the module doc)."""
    pieces: list[str] = []
    rest = line
    while len(rest) > width:
        points = _wrap_points(rest)
        fit = [p for p in points if p[0] <= width]
        at_punct = [p for p in fit if p[2] and p[0] >= width // 3]
        pick = (at_punct or fit or points[:1])
        if not pick:
            break  # no space and no punctuation: the line stays whole rather than lose a word
        end, start, _ = pick[-1]
        pieces.append(rest[:end])
        rest = rest[start:]
    pieces.append(rest)
    return pieces


def _has_words(line: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" or unicodedata.category(c) == "So" for c in line)


def _unwrap_llm_line(line: str) -> str:
    """Markup an LLM puts around a whole line: a bullet, emphasis, quotes. Words are untouched."""
    s = re.sub(r"^(?:[-•*>]|\d{1,2}[.)])\s+", "", line.strip())
    if m := re.fullmatch(r"(\*\*|__|\*|_)(.+?)\1", s):
        s = m.group(2).strip()
    if m := re.fullmatch(r'"([^"]+)"|“([^“”]+)”', s):
        s = (m.group(1) or m.group(2)).strip()
    return s


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


def _drop_cut_line(lines: list[str]) -> list[str]:
    """A truncated answer: its last line was cut mid-word (one line: its unfinished last clause)."""
    kept = [i for i, ln in enumerate(lines) if ln.strip()]
    if len(kept) > 1:
        return lines[: kept[-1]]
    if kept:
        return [re.sub(r"(?<=[.!?,;…。！？，；、])[^.!?,;…。！？，；、]*$", "", lines[kept[0]])]
    return lines


def _llm_items(text: str, truncated: bool) -> list[tuple[str, str]]:
    """The answer as ("tag", name) / ("text", line) / ("blank", "") items, preamble and postscript gone."""
    titles: set[int] = set()  # a whole line in bold: a title when it opens the answer
    lines = text.split("\n")
    if truncated:
        lines = _drop_cut_line(lines)
    items: list[tuple[str, str]] = []
    for raw in lines:
        s = raw.strip()
        if re.match(r"^(?:```|~~~)", s):
            continue  # code fences
        line = _unwrap_llm_line(s)
        name = (_section_name(s) or _section_name(line)) if s else None
        if name:
            items.append(("tag", name))
        elif not _has_words(line):
            items.append(("blank", ""))
        else:
            if re.fullmatch(r"(\*\*|__)[^*_]+\1", s):
                titles.add(len(items))
            items.append(("text", line))
    # Preamble: lines before the first tag or lyric line that introduce the answer.
    k = 0
    while k < len(items) and items[k][0] != "tag":
        if items[k][0] == "text":
            if not (k in titles or _LYRICS_PREAMBLE.match(items[k][1]) or _LYRICS_COMMENTARY.match(items[k][1])):
                break
            items[k] = ("blank", "")
        k += 1
    # Postscript: from the first commentary line after the lyrics began and after the last tag.
    first = next((i for i, it in enumerate(items) if it[0] == "text"), len(items))
    last_tag = max((i for i, it in enumerate(items) if it[0] == "tag"), default=-1)
    for i in range(max(first + 1, last_tag + 1), len(items)):
        if items[i][0] == "text" and _LYRICS_COMMENTARY.match(items[i][1]):
            items = items[:i]
            break
    return items


def _collapse_loops(lines: list[str], run: int = 4, keep: int = 2) -> list[str]:
    """A line repeated more than `run` times in a row is a model loop: keep `keep` copies of it."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j].lower() == lines[i].lower():
            j += 1
        out += lines[i:j] if j - i <= run else lines[i : i + keep]
        i = j
    return out


def parse_lyrics(text: str, subject: str = "", truncated: bool = False) -> str:
    """Sectioned lyrics ([verse]/[chorus]/[bridge]...) out of the model's answer, or a fallback."""
    sections: list[Section] = []
    current: Section | None = None
    marked = False
    for kind, value in _llm_items(_clean_text(text), truncated):
        if kind == "tag":
            marked = True
            current = Section(value, [])
            sections.append(current)
        elif kind == "blank":
            if current is not None and current.lines and not marked:
                current = None  # a blank line ends an unmarked stanza
        elif not _DIRECTION_LINE.match(value):
            if current is None:
                current = Section("", [])
                sections.append(current)
            current.lines += wrap_line(value)
    cleaned = [Section(s.name, _collapse_loops(s.lines)) for s in sections if s.lines]
    if not cleaned:
        return fallback_lyrics(subject)
    if not marked and len(cleaned) == 1 and len(cleaned[0].lines) >= 4:
        n = len(cleaned[0].lines)  # one unbroken block: cut it into stanzas so it gets a chorus
        cleaned = _chunk(cleaned[0].lines, 4 if n > 8 else (n + 1) // 2)
    _label_unmarked(cleaned)
    # A stanza seen more than 4 times is a loop, not a chorus.
    seen: dict[str, int] = {}
    final: list[Section] = []
    for s in cleaned:
        key = "\n".join(s.lines).lower()
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 4:
            final.append(s)
    if not any(s.name == "chorus" for s in final) and len(final) > 1:
        final[1].name = "chorus"
    out_lines: list[str] = []
    for s in final:
        room = MAX_LYRIC_LINES - len(out_lines) - 1
        if len(s.lines) > room and (out_lines or room <= 0):
            break  # the caps cut whole sections off the end
        out_lines += [f"[{s.name}]", *s.lines[:room], ""]
    lyrics = "\n".join(out_lines).strip()
    if len(lyrics) > MAX_LYRIC_CHARS:
        lyrics = lyrics[:MAX_LYRIC_CHARS].rsplit("\n", 1)[0]
    return lyrics


def _clean_user_text(text: str) -> str:
    """NFC, one kind of newline, no control characters: nothing a user can see is removed."""
    text = unicodedata.normalize("NFC", text or "").lstrip("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)


def normalize_user_lyrics(lyrics: str) -> str:
    """A user's own lyrics, sung as written: only the section tags are repaired (see the module doc)."""
    lines = [ln.strip() for ln in _clean_user_text(lyrics).split("\n")]
    names = [_section_name(ln) if ln else None for ln in lines]
    if not any(ln and not name for ln, name in zip(lines, names)):
        return ""  # no words to sing
    sections: list[Section] = []
    current: Section | None = None
    marked = any(names)
    for line, name in zip(lines, names):
        if name:
            current = Section(name, [])
            sections.append(current)
        elif not line:
            if current is not None and current.lines and current.lines[-1]:
                if marked:
                    current.lines.append("")  # a stanza break inside a tagged section
                else:
                    current = None  # a blank line ends an unmarked stanza
        else:
            if current is None:
                current = Section("verse" if marked else "", [])
                sections.append(current)
            current.lines.append(line)
    for s in sections:
        while s.lines and not s.lines[-1]:
            s.lines.pop()
    if not marked:
        _label_unmarked(sections)
    return "\n\n".join("\n".join([f"[{s.name}]", *s.lines]) for s in sections)


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
        if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:  # kana
            counts["ja"] += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
            counts["zh"] += 1
        elif 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
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
