"""Property tests for the lyrics contract in deployments/lyrics_text.py's module docstring.

Generated texts in several scripts (Latin with punctuation and apostrophes, Cyrillic, Greek,
Chinese, Japanese with kana, Korean, emoji, mixed) check that the user's words are sung as
written, section markers become canonical tags, wrapping never cuts a word, and an LLM answer
keeps every lyric line in order around whatever preamble and postscript it came with.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployments import lyrics_text as lt

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CANONICAL = {f"[{name}]" for name in lt.SECTION_NAMES}

# ---------------------------------------------------------------- words and lines in many scripts

LATIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZàáâäçèéêëíîïñóôöùúûüßÀÉÖÜ"
CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯ"
GREEK = "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώΑΒΓΔΘΛΞΠΣΦΨΩ"
EMOJI = ["😀", "🎵", "🎶", "❤️", "🔥", "✨", "🌧️", "🌙", "💔", "🚗"]
SPACED_PUNCT = ["", "", "", ",", ".", "!", "?", ";", ":", "…", "?!"]
CJK_PUNCT = "，。！？、；：…"  # what CJK lines may be wrapped after
ASCII_PUNCT = ",.!?;:"

hanzi = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
kana = st.one_of(st.characters(min_codepoint=0x3041, max_codepoint=0x3093),
                 st.characters(min_codepoint=0x30A1, max_codepoint=0x30F3), st.just("ー"))
hangul = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)

latin_word = st.builds(lambda a, apo, b: a + apo + b, st.text(LATIN, min_size=1, max_size=7),
                       st.sampled_from(["", "", "", "'", "’"]), st.text(LATIN, max_size=3))
cyrillic_word = st.text(CYRILLIC, min_size=1, max_size=9)
greek_word = st.text(GREEK, min_size=1, max_size=9)
korean_word = st.text(hangul, min_size=1, max_size=5)
emoji_word = st.sampled_from(EMOJI)
any_word = st.one_of(latin_word, cyrillic_word, greek_word, korean_word, emoji_word,
                     st.text(hanzi, min_size=1, max_size=4), st.text(kana, min_size=1, max_size=4))


def spaced_line(word, max_words: int = 10):
    """Words with trailing punctuation, one space apart."""
    return st.lists(st.tuples(word, st.sampled_from(SPACED_PUNCT)), min_size=1, max_size=max_words).map(
        lambda ws: " ".join(w + p for w, p in ws))


def cjk_line(chars, max_segments: int = 6, max_len: int = 12):
    """Runs of CJK characters with punctuation between them and no spaces (Chinese, Japanese)."""
    seg = st.text(chars, min_size=1, max_size=max_len)
    punct = st.sampled_from(list(CJK_PUNCT) + list(ASCII_PUNCT))
    return st.tuples(seg, st.lists(st.tuples(punct, seg), max_size=max_segments),
                     st.sampled_from(["", "", "。", "！", "？"])).map(
        lambda t: t[0] + "".join(p + s for p, s in t[1]) + t[2])


japanese_chars = st.one_of(kana, kana, hanzi)
SCRIPTS = {
    "latin": spaced_line(latin_word),
    "cyrillic": spaced_line(cyrillic_word),
    "greek": spaced_line(greek_word),
    "korean": spaced_line(korean_word),
    "chinese": cjk_line(hanzi),
    "japanese": cjk_line(japanese_chars),
    "emoji": spaced_line(st.one_of(latin_word, emoji_word), 6),
    "mixed": spaced_line(any_word),
}
lyric_line = st.one_of(*SCRIPTS.values())
long_spaced_line = st.one_of(*(spaced_line(w, 30) for w in (latin_word, cyrillic_word, greek_word,
                                                             korean_word, any_word)))
long_cjk_line = st.one_of(cjk_line(hanzi, 12, 20), cjk_line(japanese_chars, 12, 20))

# Section markers as people and models write them, with the canonical tag each one means.
SECTION_SPELLINGS = {
    "verse": "verse", "chorus": "chorus", "refrain": "chorus", "hook": "chorus", "bridge": "bridge",
    "intro": "intro", "outro": "outro", "pre-chorus": "pre-chorus", "pre chorus": "pre-chorus",
    "prechorus": "pre-chorus", "post-chorus": "chorus", "interlude": "bridge", "coda": "outro",
}
QUALIFIERS = ["", "", " 1", " 2", " 3", " II", " x2", " (x2)", " 2x"]
FORMATS = ["[{}]", "[{}]", "({})", "{}:", "{}", "**{}**", "**{}:**", "## {}", "[{}]:", "{} -", "__{}__",
           "**[{}]**", "[**{}**]", "*{}*"]


@st.composite
def section_marker(draw) -> tuple[str, str]:
    word = draw(st.sampled_from(sorted(SECTION_SPELLINGS)))
    case = draw(st.sampled_from([str.lower, str.upper, str.title, str.capitalize]))
    marker = draw(st.sampled_from(FORMATS)).format(case(word) + draw(st.sampled_from(QUALIFIERS)))
    return marker, SECTION_SPELLINGS[word]


def non_tag(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln and ln not in CANONICAL]


def words(lines: list[str]) -> list[str]:
    return [w for ln in lines for w in ln.split()]


# ---------------------------------------------------------------- user lyrics

# Users may write anything: markup characters are their words too.
USER_EXTRA = "-*_<>\"“”‘’'[](){}#•>&%$@!?.,;:~/\\|=+0123456789"
user_text_line = st.one_of(
    lyric_line,
    st.text(LATIN + CYRILLIC + USER_EXTRA + " \t", min_size=1, max_size=40),
    st.sampled_from(["- a list item", "1. numbered line", "> quoted reply", '"Quoted," she said', "I <love> you",
                     "snake_case dreams", "__init__ of my heart", "**bold** words", "<3 forever", "# not a verse",
                     "(oh oh oh)", "(laughs)", "[guitar solo]", "I have a dream tonight", "Okay let's go",
                     "Here is where I belong", "Bridge over troubled water", "Chorus girls are dancing"]),
)
pad = st.sampled_from(["", "", " ", "  ", "\t", "\u3000"])


@st.composite
def user_lyrics(draw) -> tuple[str, list[str]]:
    """(raw text, its lines) with lyric lines, section markers and blank runs in any order."""
    kinds = st.one_of(user_text_line, user_text_line, section_marker().map(lambda m: m[0]), st.just(""))
    lines = draw(st.lists(st.tuples(pad, kinds, pad).map("".join), min_size=1, max_size=20))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return newline.join(lines), lines


def _user_lines_in(lines: list[str]) -> list[str]:
    out = [unicodedata.normalize("NFC", ln).strip() for ln in lines]
    return [ln for ln in out if ln and lt._section_name(ln) is None]


@FAST
@given(user_lyrics())
def test_user_lyric_lines_come_out_verbatim_and_in_order(case):
    raw, lines = case
    out = lt.normalize_user_lyrics(raw).split("\n")
    expected = _user_lines_in(lines)
    assert non_tag(out) == expected
    assert words(non_tag(out)) == words(expected)  # the sequence of sung words is the user's
    if not expected:
        assert out == [""]


@FAST
@given(user_lyrics())
def test_user_tags_are_canonical_in_the_users_order(case):
    raw, lines = case
    out = lt.normalize_user_lyrics(raw).split("\n")
    got = [ln for ln in out if ln in CANONICAL]
    if not _user_lines_in(lines):
        return
    tags = [lt._section_name(ln.strip()) for ln in lines if ln.strip() and lt._section_name(ln.strip())]
    if tags:
        first_text = next(i for i, ln in enumerate(lines) if ln.strip() and not lt._section_name(ln.strip()))
        first_tag = next(i for i, ln in enumerate(lines) if ln.strip() and lt._section_name(ln.strip()))
        lead = ["[verse]"] if first_text < first_tag else []  # untagged opening lines get a verse
        assert got == lead + [f"[{t}]" for t in tags]
    else:  # no tags: one default tag per blank-line stanza (a repeated stanza is the chorus)
        text = "\n".join(unicodedata.normalize("NFC", ln).strip() for ln in lines)
        stanzas = [stanza for stanza in re.split(r"\n\s*\n", text) if stanza.strip()]
        assert len(got) == len(stanzas) and out[0] in ("[verse]", "[chorus]")
    assert "\n\n\n" not in lt.normalize_user_lyrics(raw)


@FAST
@given(section_marker(), lyric_line)
def test_a_marker_only_line_becomes_the_canonical_tag(marker, line):
    spelling, canon = marker
    assert lt._section_name(spelling) == canon
    assert lt.normalize_user_lyrics(f"{spelling}\n{line}") == f"[{canon}]\n{line}"


ORDINARY = ["over", "troubled", "water", "girls", "are", "dancing", "me", "the", "of", "is", "and", "tonight",
            "love", "my", "we", "you", "all", "night", "to", "is"]


@FAST
@given(st.sampled_from(sorted(SECTION_SPELLINGS)), st.sampled_from([str.lower, str.title, str.upper]),
       st.sampled_from(["", "", ":", " -", ","]), st.lists(st.sampled_from(ORDINARY), min_size=1, max_size=6),
       st.sampled_from(["", "(", "["]))
def test_a_line_that_only_starts_with_a_section_word_is_a_lyric(word, case, sep, rest, wrap):
    close = {"": "", "(": ")", "[": "]"}[wrap] if not sep else ""
    line = f"{wrap if not sep else ''}{case(word)}{sep} {' '.join(rest)}{close}"
    assert lt._section_name(line) is None
    out = lt.normalize_user_lyrics(f"[verse]\n{line}\nand more words")
    assert out == f"[verse]\n{line}\nand more words"
    assert line in lt.parse_lyrics(f"[verse]\nfirst words here\n{line}\n[chorus]\nla la la\nsing it now", "x")


# ---------------------------------------------------------------- wrapping


def _check_pieces(line: str, pieces: list[str]) -> None:
    """The pieces are the line, in order, cut only at spaces (removed) or right after punctuation."""
    at = 0
    for i, piece in enumerate(pieces):
        assert piece and line.startswith(piece, at), (line, pieces)
        at += len(piece)
        if i < len(pieces) - 1:
            if line[at].isspace():
                while line[at].isspace():
                    at += 1
            else:
                assert piece[-1] in CJK_PUNCT + ASCII_PUNCT, (piece, pieces)
    assert at == len(line)


@FAST
@given(st.one_of(long_spaced_line, long_cjk_line, lyric_line), st.integers(12, 80))
def test_wrapping_keeps_every_character_in_order(line, width):
    pieces = lt.wrap_line(line, width)
    _check_pieces(line, pieces)
    if len(line) <= width:
        assert pieces == [line]
    for piece in pieces:  # an overlong piece is one with no place to cut inside its first `width` chars
        assert len(piece) <= width or not any(p[0] <= width for p in lt._wrap_points(piece))


@FAST
@given(long_cjk_line, st.integers(8, 64))
def test_cjk_lines_are_cut_only_after_punctuation(line, width):
    pieces = lt.wrap_line(line, width)
    assert "".join(pieces) == line
    assert all(p[-1] in CJK_PUNCT + ASCII_PUNCT for p in pieces[:-1]), pieces


@FAST
@given(long_spaced_line)
def test_spaced_lines_are_cut_only_at_spaces(line):
    pieces = lt.wrap_line(line)
    assert " ".join(pieces).split() == line.split()
    assert all(len(p) <= lt.WRAP_WIDTH for p in pieces if " " in p)


# ---------------------------------------------------------------- LLM answers

PREAMBLES = ["Sure! Here's a song about the sea:", "Here is a song about the sea:", "Okay, here are the lyrics:",
             "Certainly! Below are the lyrics for your song.", "Title: Ocean Blue", "**Ocean Blue**", "# Ocean Blue",
             "Lyrics:", "Sure!", "I've written a song about the sea for you.", "Of course! Here's my attempt:"]
POSTSCRIPTS = ["I hope you enjoy this song!", "Note: the chorus repeats twice.", "Feel free to ask for changes.",
               "Let me know if you'd like any changes!", "This song captures the feeling of freedom.", "(End)",
               "Enjoy!", "I hope you enjoy it!\nIt was written to be sung slowly, with a soft piano."]
# Lines a lyric may contain that the old parser took for preamble, commentary or a section tag.
TRICKY = ["I have a dream tonight", "Okay we're going home", "Here is where I belong", "Sure as the sun will rise",
          "Bridge over troubled water", "Chorus girls are dancing", "Enjoy the silence", "This song is in my heart",
          "Of course I love you", "Let me know if you love me", "The song remains the same", "Title of my life",
          "I hope you find your way", "Below the bridge we meet"]
LLM_MARKERS = ["[Verse 1]", "**Verse:**", "(Chorus)", "Chorus:", "**Bridge**", "## Outro", "[pre-chorus]",
               "**[Chorus]**", "VERSE 2", "Intro -", "[Hook]"]


def _plain(line: str) -> bool:
    """A generated line that is itself preamble/commentary-shaped is ambiguous at the edges (held by examples)."""
    return not (lt._section_name(line) or lt._LYRICS_PREAMBLE.match(line) or lt._LYRICS_COMMENTARY.match(line))


plain_line = st.one_of(lyric_line, st.sampled_from(TRICKY)).filter(_plain)
# Inside the lyrics (before the last tag) even preamble- or commentary-shaped lines are kept; only
# markup around a whole line ("**Ocean Blue**" -> "Ocean Blue") may go, so those are left out here.
middle_line = st.one_of(lyric_line, st.sampled_from(TRICKY + POSTSCRIPTS[:-1] + PREAMBLES)).filter(
    lambda ln: not lt._section_name(ln) and ln == lt._unwrap_llm_line(ln))


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def assert_lines_in_order(out: str, lines: list[str]) -> None:
    """Every input lyric line comes out, in order, whole or as its wrapped pieces, and nothing else."""
    got = non_tag(out.split("\n"))
    k = 0
    for line in lines:
        if len(line) <= lt.WRAP_WIDTH:
            assert k < len(got) and got[k] == line, (line, got[k:k + 3])
            k += 1
            continue
        pieces = []
        while len("".join(map(squash, pieces))) < len(squash(line)):
            pieces.append(got[k])
            k += 1
        _check_pieces(line, pieces)
    assert k == len(got), got[k:]


@st.composite
def llm_answer(draw, tagged: bool) -> tuple[str, list[str]]:
    """(answer, its lyric lines): preamble + sections + postscript, maybe fenced, tags spelled any way."""
    n = draw(st.integers(1, 4))
    seen: set[str] = set()
    parts: list[str] = []
    lines: list[str] = []
    for i in range(n):
        last = i == n - 1
        pool = plain_line if (last or not tagged) else middle_line
        stanza = draw(st.lists(pool, min_size=1, max_size=5, unique_by=str.lower))
        stanza = [ln for ln in stanza if ln.lower() not in seen]
        seen.update(ln.lower() for ln in stanza)
        lines += stanza
        head = [draw(st.sampled_from(LLM_MARKERS))] if tagged else []
        parts.append("\n".join(head + [draw(pad) + ln + draw(pad) for ln in stanza]))
    body = "\n\n".join(parts)
    if draw(st.booleans()):
        body = f"```\n{body}\n```"
    pre = draw(st.lists(st.sampled_from(PREAMBLES), max_size=2))
    post = draw(st.lists(st.sampled_from(POSTSCRIPTS), max_size=2))
    answer = "\n\n".join([*pre, body, *post])
    return answer, lines


@SLOW
@given(llm_answer(tagged=True))
def test_llm_tagged_answer_keeps_every_lyric_line_in_order(case):
    answer, lines = case
    out = lt.parse_lyrics(answer, "the sea")
    assert_lines_in_order(out, lines)
    assert out.split("\n")[0] in CANONICAL and "```" not in out


@SLOW
@given(llm_answer(tagged=False))
def test_llm_untagged_answer_keeps_every_lyric_line_in_order(case):
    answer, lines = case
    out = lt.parse_lyrics(answer, "the sea")
    assert_lines_in_order(out, lines)
    assert out.split("\n")[0] in CANONICAL


@SLOW
@given(st.lists(plain_line, min_size=2, max_size=12, unique_by=str.lower), st.booleans())
def test_truncated_answer_loses_only_its_last_line(lines, tagged):
    answer = ("[verse]\n" if tagged else "") + "\n".join(lines)
    assert_lines_in_order(lt.parse_lyrics(answer, "x", truncated=True), lines[:-1])
    assert_lines_in_order(lt.parse_lyrics(answer, "x", truncated=False), lines)


@SLOW
@given(st.lists(st.one_of(long_spaced_line, long_cjk_line), min_size=1, max_size=4, unique_by=str.lower)
       .map(lambda ls: [ln for ln in ls if _plain(ln)]).filter(bool))
def test_prose_keeps_its_sentences_in_order(lines):
    """Long prose lines (the model answering in paragraphs) are wrapped, never reordered."""
    out = lt.parse_lyrics("\n".join(lines), "x")
    assert_lines_in_order(out, lines)


@FAST
@given(st.lists(st.sampled_from(PREAMBLES + POSTSCRIPTS[:-1] + ["", "```", "---", "..."]), max_size=4))
def test_fallback_only_when_no_lyric_line_is_left(noise):
    assert lt.parse_lyrics("\n".join(noise), "summer rain") == lt.fallback_lyrics("summer rain")
