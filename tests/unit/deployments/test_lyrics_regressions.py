"""Issue 14: lyrics must keep their words. One example per bug found with real texts; each fails on
the parser before the fix (deployments/lyrics_text.py at 70b6bc0)."""

from __future__ import annotations

from deployments import lyrics_text as lt


def body(lyrics: str) -> list[str]:
    return [ln for ln in lyrics.splitlines() if ln and not ln.startswith("[")]


def tags(lyrics: str) -> list[str]:
    return [ln for ln in lyrics.splitlines() if ln.startswith("[")]


class TestLongProseKeepsItsOrder:
    def test_a_long_sentence_after_a_short_one_is_not_moved_before_it(self):
        line = "Short start, " + " ".join(["wander"] * 14) + " far away. End here."
        out = body(lt.parse_lyrics(f"[verse]\n{line}\n[chorus]\nla one\nla two\nla three", "x"))
        assert " ".join(out[:-3]) == line  # the old parser put the long sentence's head first
        assert all(len(ln) <= lt.WRAP_WIDTH for ln in out)

    def test_paragraphs_of_prose_come_out_whole_and_in_order(self):
        prose = ("We walked along the river where the willows bend and sway and whisper to the water all day long, "
                 "then. The night came down on us like velvet, soft and slow, and every star was listening to our "
                 "song.")
        out = body(lt.parse_lyrics(f"{prose}\nStill we sing\nStill we go", "river"))
        assert " ".join(out[:-2]) == prose


class TestCommonOpeningWordsAreLyrics:
    LINES = ["Walking down the road", "I have a dream tonight", "Okay we're going home", "Here is where I belong"]

    def test_lines_starting_with_common_words_stay_in_the_middle(self):
        raw = "[verse]\n" + "\n".join(self.LINES) + "\n\n[chorus]\nSing it\nSing it loud"
        assert body(lt.parse_lyrics(raw, "x")) == self.LINES + ["Sing it", "Sing it loud"]

    def test_they_do_not_replace_the_lyrics_with_the_fallback(self):
        raw = "I have a dream tonight\nOkay we're going home\nHere is where I belong\nSure as the sun will rise"
        out = lt.parse_lyrics(raw, "dreams")
        assert out != lt.fallback_lyrics("dreams")
        assert body(out) == raw.split("\n")

    def test_commentary_lookalikes_inside_the_lyrics_stay(self):
        raw = ("[verse]\nEnjoy the silence\nThis song is in my heart\nNote the way you move\n\n"
               "[chorus]\nHold on\nHold on tight\n\nI hope you enjoy this song!")
        assert body(lt.parse_lyrics(raw, "x")) == ["Enjoy the silence", "This song is in my heart",
                                                  "Note the way you move", "Hold on", "Hold on tight"]

    def test_preamble_and_postscript_around_the_lyrics_still_go(self):
        raw = ("Sure! Here is a song about the sea:\n\n```\n**[Verse 1]**\nI have the sea\nOkay the tide\n\n"
               "**Chorus:**\nWaves, waves\nHere is the shore\n```\n\nI hope you enjoy this song!\n"
               "It captures the feeling of the sea.")
        out = lt.parse_lyrics(raw, "sea")
        assert out == "[verse]\nI have the sea\nOkay the tide\n\n[chorus]\nWaves, waves\nHere is the shore"

    def test_only_a_missing_lyric_brings_the_fallback(self):
        assert lt.parse_lyrics("[verse]\nOne line only", "x") == "[verse]\nOne line only"
        assert lt.parse_lyrics("Sure! Here are the lyrics:\n\nI hope you enjoy!", "x") == lt.fallback_lyrics("x")

    def test_a_chorus_sung_three_times_is_kept(self):
        chorus = "[chorus]\nla la la\nho ho ho"
        raw = f"[verse]\na b c\n{chorus}\n[verse]\nd e f\n{chorus}\n[bridge]\ng h i\n{chorus}"
        assert lt.parse_lyrics(raw, "x").count("la la la") == 3


class TestSectionWordsStartingALine:
    def test_user_line_starting_with_a_section_word_is_sung(self):
        raw = "[verse]\nBridge over troubled water\nChorus girls are dancing\nIntro to my heart\nHook, line and sinker"
        assert lt.normalize_user_lyrics(raw) == raw

    def test_untagged_user_line_starting_with_a_section_word_is_sung(self):
        out = lt.normalize_user_lyrics("Bridge over troubled water\nI will lay me down")
        assert out == "[verse]\nBridge over troubled water\nI will lay me down"

    def test_llm_line_starting_with_a_section_word_is_sung(self):
        raw = "[verse]\nLike a bridge\nBridge over troubled water\nI will lay me down\n[chorus]\nSail on\nSail on by"
        assert "Bridge over troubled water" in body(lt.parse_lyrics(raw, "x"))

    def test_marker_only_lines_still_become_tags(self):
        raw = "**Verse 1:**\na\n(Chorus)\nb\nBridge -\nc\n[Pre-Chorus]\nd\nOUTRO\ne\n[Verse 2: Jay-Z]\nf\n## Intro\ng"
        out = lt.normalize_user_lyrics(raw)
        assert tags(out) == ["[verse]", "[chorus]", "[bridge]", "[pre-chorus]", "[outro]", "[verse]", "[intro]"]
        assert body(out) == list("abcdefg")


class TestUserMarkupIsKept:
    def test_list_markers_quotes_angle_brackets_and_underscores_are_the_users_words(self):
        lines = ["- a list item", "1. numbered line", "> an echo", '"Quoted," she said', "“Stay” he said",
                 "I <love> you", "snake_case dreams", "**loud** words", "__init__ of my heart", "'cause I'm here"]
        raw = "[verse]\n" + "\n".join(lines)
        assert lt.normalize_user_lyrics(raw) == raw

    def test_stanza_breaks_and_empty_tags_of_the_user_stay(self):
        raw = "[Intro]\n\n[Verse]\nfirst stanza\n\n\n\nsecond stanza\n[Chorus]\nyeah"
        assert lt.normalize_user_lyrics(raw) == "[intro]\n\n[verse]\nfirst stanza\n\nsecond stanza\n\n[chorus]\nyeah"


class TestCjkIsNotCutMidWord:
    ZH = ("我们在夜里唱歌，" + "风吹过城市的每一个角落和每一条街道" * 2 + "。明天会更好，"
          + "星星在天上闪烁着光芒照亮我们回家的路" * 2)
    JA = ("君と歌った夏の日を、" + "いつまでも忘れないでほしいと願いながら歩いていく" * 2 + "。"
          + "ずっとずっと遠くまで、" + "ひかりのなかで手をつないで笑っていようね" * 2)

    def test_chinese_lines_are_cut_only_after_punctuation(self):
        out = body(lt.parse_lyrics(f"[verse]\n{self.ZH}\n[chorus]\n歌唱吧\n一起唱\n到天明", "x"))[:-3]
        assert "".join(out) == self.ZH and len(out) > 1
        assert all(ln[-1] in "，。！？、；：…" for ln in out[:-1]), out

    def test_japanese_lines_are_cut_only_after_punctuation(self):
        out = body(lt.parse_lyrics(f"[verse]\n{self.JA}\n[chorus]\n歌え\n歌え 歌え\n夜明けまで", "x"))[:-3]
        assert "".join(out) == self.JA and len(out) > 1
        assert all(ln[-1] in "，。！？、；：…" for ln in out[:-1]), out

    def test_a_long_line_without_punctuation_stays_whole(self):
        line = "风吹过城市的每一个角落和每一条街道" * 5
        assert body(lt.parse_lyrics(f"[verse]\n{line}\n[chorus]\n歌え 歌え\n夜明けまで\n君と", "x"))[0] == line

    def test_halfwidth_katakana_is_japanese(self):
        assert lt.guess_language("ｱｲｼﾃﾙ ｱｲｼﾃﾙ") == "ja"
