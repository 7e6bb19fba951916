"""LLM output repair: what a rambling model says becomes tags, sectioned lyrics, a title and categories."""

from deployments import lyrics_text as lt


def sections(lyrics: str) -> list[str]:
    return [ln for ln in lyrics.splitlines() if ln.startswith("[")]


class TestTags:
    def test_preamble_and_markdown_are_stripped(self):
        raw = "Sure! Here are the tags:\n**synthwave**, male vocal, Synth, drums, nostalgic, 110 BPM, A minor\nHope this helps!"
        assert lt.parse_tags(raw) == ["synthwave", "male vocal", "synth", "drums", "nostalgic", "110 bpm", "a minor"]

    def test_dedupes_and_caps(self):
        words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar"
        raw = ", ".join(["pop", "Pop", "POP"] + words.split())
        tags = lt.parse_tags(raw)
        assert tags[0] == "pop" and tags.count("pop") == 1
        assert len(tags) == lt.MAX_TAGS

    def test_instrumental_never_has_a_vocal_tag(self):
        raw = "jazz, female vocal, male vocals, choir, piano, saxophone, smooth, 90 bpm"
        tags = lt.parse_tags(raw, "smooth jazz", instrumental=True)
        assert "instrumental" in tags
        assert not any(lt.is_vocal_tag(t) for t in tags)
        assert {"jazz", "piano", "saxophone"} <= set(tags)

    def test_rambling_answer_falls_back_to_the_description(self):
        raw = "I think that this song should be very nice and I would like to describe it in many words."
        tags = lt.parse_tags(raw, "an energetic rock song with electric guitar at 140 bpm", False)
        assert {"rock", "electric guitar", "energetic", "140 bpm"} <= set(tags)

    def test_junk_and_cut_off_tags_are_dropped(self):
        raw = "metal, 8bpmbiggadamants, 75% audio quality, 4k resolution, 300 bpm, 120 bpm, heavy guitar, 80s, fun"
        tags = lt.parse_tags(raw, truncated=True)
        assert tags == ["metal", "120 bpm", "heavy guitar", "80s"]

    def test_user_tags_keep_their_words(self):
        assert lt.normalize_user_tags("Electronic Rap, 140BPM,  rap ,", False) == ["electronic rap", "140bpm", "rap"]
        assert lt.normalize_user_tags("lofi, female vocal, piano", True) == ["lofi", "instrumental", "piano"]


class TestLyrics:
    def test_section_variants_are_normalized(self):
        raw = (
            "Here's a song about rain:\n\n**Verse 1:**\nRain on the window\nGrey on the street\n\n"
            "(Chorus)\nOh the rain, the rain\nWashes me clean\n\nBridge -\nThunder rolls\nLightning shows\n\n"
            "[Outro]\nRain goes away\n\nI hope you enjoy this song!"
        )
        out = lt.parse_lyrics(raw, "rain")
        assert sections(out) == ["[verse]", "[chorus]", "[bridge]", "[outro]"]
        assert "Here's" not in out and "enjoy" not in out
        assert "Oh the rain, the rain" in out

    def test_unmarked_stanzas_get_sections_and_repeat_is_chorus(self):
        raw = "Walking alone\nThrough the night\n\nHold me now\nHold me tight\n\nCity lights\nFade away\n\nHold me now\nHold me tight"
        out = lt.parse_lyrics(raw, "night")
        assert sections(out) == ["[verse]", "[chorus]", "[verse]", "[chorus]"]

    def test_unmarked_block_is_chunked_with_a_chorus(self):
        raw = "\n".join(f"line number {i} of the song" for i in range(12))
        out = lt.parse_lyrics(raw, "x")
        assert sections(out)[:2] == ["[verse]", "[chorus]"]
        assert "line number 11 of the song" in out

    def test_loops_are_cut(self):
        raw = "[verse]\n" + "la la la\n" * 40 + "[chorus]\nsing\nsing it\nsing it now\n"
        out = lt.parse_lyrics(raw, "x")
        assert out.count("la la la") <= 2

    def test_prose_becomes_lyric_lines_and_cut_text_is_dropped(self):
        raw = ("The lights were brighter than the stars above, I was lost in the neon streets of the city, "
               "my heart racing as I drove. The sirens sang to me, the horns crashed on glass walls, "
               "and I kept going. I remember the last time I dro")
        out = lt.parse_lyrics(raw, "night", truncated=True)
        body = [ln for ln in out.splitlines() if ln and not ln.startswith("[")]
        assert len(body) >= 4 and all(len(ln) <= 64 for ln in body)
        assert "The lights were brighter than the stars above" in out
        assert "dro" not in out.split()[-1] and "last time" not in out
        assert "[chorus]" in out

    def test_stage_directions_are_dropped(self):
        out = lt.parse_lyrics("[verse]\nI sing\n(laughs)\nYou sing\nWe sing\nThey sing\n", "x")
        assert "(laughs)" not in out and "You sing" in out

    def test_garbage_falls_back_to_singable_lyrics(self):
        out = lt.parse_lyrics("Sure!", "summer nights and dancing")
        assert sections(out)[:2] == ["[verse]", "[chorus]"]
        assert "summer nights and dancing" in out

    def test_length_is_capped(self):
        raw = "\n\n".join(f"[verse]\nline {i} a\nline {i} b\nline {i} c" for i in range(100))
        out = lt.parse_lyrics(raw, "x")
        assert len(out.splitlines()) <= lt.MAX_LYRIC_LINES
        assert len(out) <= lt.MAX_LYRIC_CHARS

    def test_non_latin_lyrics_survive(self):
        raw = "[verse]\n雨の夜に\n君を思う\n\n[chorus]\n歌え 歌え\n夜明けまで"
        out = lt.parse_lyrics(raw, "雨")
        assert "雨の夜に" in out and sections(out) == ["[verse]", "[chorus]"]
        assert lt.guess_language(out) == "ja"

    def test_user_lyrics_keep_words_and_gain_tags(self):
        out = lt.normalize_user_lyrics("Hello world\nI am here\n\nSing along\nAll day long")
        assert out == "[verse]\nHello world\nI am here\n\n[chorus]\nSing along\nAll day long"
        assert lt.normalize_user_lyrics("[Chorus]\nyeah") == "[chorus]\nyeah"


class TestMeta:
    def test_title_and_categories(self):
        title, cats = lt.parse_meta('Title: "Neon Rain"\nCategories: synthwave, Electronic, retro, electronic', "x", [])
        assert title == "Neon Rain"
        assert cats[:3] == ["Synthwave", "Electronic", "Retro"]
        assert 3 <= len(cats) <= 5

    def test_fallbacks_when_the_model_says_nothing_useful(self):
        title, cats = lt.parse_meta("I cannot do that.", "a jazz ballad about the sea", ["jazz", "piano", "sad"],
                                    "[verse]\nThe sea is calling me home\n")
        assert title == "The Sea Is Calling Me"
        assert 3 <= len(cats) <= 5 and "Jazz" in cats

    def test_guess_language(self):
        assert lt.guess_language("hello there") == "en"
        assert lt.guess_language("我爱你 中国") == "zh"
        assert lt.guess_language("사랑해요") == "ko"
        assert lt.guess_language("Привет мир") == "ru"
