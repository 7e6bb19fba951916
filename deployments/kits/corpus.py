"""Small embedded text corpus for training the kits' tokenizers offline.

English music vocabulary (genres, instruments, moods, song structure, lyric-like lines) plus a few
lines in other languages and scripts, so the trained byte-level BPE has merges for common words
while any other text still tokenizes (byte-level fallback covers every byte).

The text is deterministic: `corpus_lines()` always yields the same lines in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

GENRES = (
    "pop rock jazz blues funk soul disco house techno trance ambient lofi hip hop rap trap drill "
    "reggae reggaeton dancehall afrobeat kpop jpop cpop edm dubstep drum and bass garage grime "
    "country folk bluegrass americana gospel metal punk emo grunge indie alternative shoegaze "
    "synthwave vaporwave chillwave classical orchestral cinematic soundtrack opera baroque "
    "bossa nova samba salsa tango flamenco cumbia latin r&b neo soul lounge swing bebop "
    "acoustic electronic experimental minimal industrial new wave post punk dream pop city pop"
).split()

INSTRUMENTS = (
    "piano guitar acoustic guitar electric guitar bass guitar drums drum machine synth synthesizer "
    "strings violin viola cello double bass harp flute clarinet oboe saxophone trumpet trombone "
    "horn organ rhodes wurlitzer accordion harmonica ukulele banjo mandolin sitar koto shamisen "
    "erhu guzheng pipa tabla djembe congas bongos marimba vibraphone glockenspiel choir vocals "
    "female vocals male vocals harmonies 808 kick snare hi hat claps shaker tambourine pads arp"
).split()

MOODS = (
    "happy sad melancholic uplifting energetic calm relaxing dreamy dark bright warm cold epic "
    "romantic nostalgic hopeful angry peaceful mysterious playful groovy chill intense gentle "
    "soft loud fast slow upbeat downtempo emotional powerful haunting catchy smooth gritty lush"
).split()

STRUCTURE = (
    "[intro]", "[verse]", "[pre-chorus]", "[chorus]", "[bridge]", "[outro]", "[hook]",
    "[instrumental]", "[inst]", "[break]", "[drop]", "[solo]", "[interlude]", "[fade out]",
)

ENGLISH = """\
A beautiful piano piece with soft melodies and gentle strings.
Upbeat pop song with bright vocals, catchy hooks and a driving beat.
Lofi hip hop beat with dusty drums, warm rhodes chords and vinyl crackle.
Epic orchestral soundtrack with huge drums, brass and a soaring choir.
Chill synthwave with retro synths, gated reverb drums and a neon night mood.
Acoustic folk ballad with fingerpicked guitar and a warm male voice.
Dark techno track at 128 bpm with a rolling bassline and hypnotic arps.
Jazz trio with upright bass, brushed drums and a swinging piano solo.
Funky disco groove with slap bass, wah guitar and a four on the floor kick.
Melancholic indie rock with jangly guitars and a nostalgic feeling.
Soft notes in the morning light, music fills the air tonight.
I walk along the river, the city lights are calling me home.
We were young and we were free, dancing in the summer rain.
Hold on to the feeling, never let it go, never let it go.
Every heartbeat is a drum, every breath a melody.
The stars are falling down like silver rain upon the sea.
Turn it up, turn it up, let the whole world hear the sound.
Under the moon we sing along, the night is young and so are we.
I remember your smile in the golden afternoon.
Rain on the window, coffee in my hand, a quiet song for a quiet land.
Write a two-line poem about rain.
Write song lyrics about the ocean with a verse and a chorus.
The quick brown fox jumps over the lazy dog.
You are a helpful assistant. Answer the question in a few words.
Generate cover art for a song: an album cover with bold colors and clean typography.
lofi hip hop, cover art, anime girl studying at night, cozy room, warm lamp light.
A watercolor painting of mountains at sunrise, soft pastel colors, minimal design.
Neon city skyline at night, synthwave style, purple and pink gradient sky.
An abstract vinyl record cover, geometric shapes, high contrast, studio lighting.
bpm: 120, key: C major, time signature: 4, duration: 30 seconds.
bpm: 90, key: A minor, time signature: 3, duration: 60 seconds.
keyscale: E minor, D major, G major, F sharp minor, B flat major, A flat major.
Fill the audio semantic mask based on the given conditions:
Repaint the mask area based on the given conditions:
Generate audio semantic tokens based on the given conditions:
# Instruction
# Caption
# Metas
# Languages
# Lyric
- bpm: N/A
- timesignature: N/A
- keyscale: N/A
- duration: 30 seconds
Hello world, hello music, hello everyone.
One, two, three, four, five, six, seven, eight, nine, ten, one hundred, 2024, 1999.
"""

OTHER_LANGUAGES = """\
在晨光中轻轻歌唱，音乐充满了今夜的空气。
我们一起走过春夏秋冬，心中的歌永远不会停。
流行音乐，钢琴，吉他，鼓，贝斯，合唱，副歌，主歌。
朝の光の中で、やさしいメロディーが流れる。
君と歌った夏の日を、今でも覚えているよ。
ポップ、ロック、ジャズ、ピアノ、ギター、サビ、メロディー。
아침 햇살 속에서 부드러운 노래를 불러요.
우리는 함께 춤을 추고 노래해요.
Bajo la luna cantamos, la noche es joven y nosotros también.
El corazón late como un tambor, cada respiro es una melodía.
Sous la pluie d'été nous dansons encore, la musique ne s'arrête jamais.
Ich höre die Musik in der Nacht, die Sterne fallen wie Regen.
Eu canto para o mar, a saudade vem com a maré.
Под дождём мы танцуем, музыка звучит всю ночь.
Canzone d'amore sotto le stelle, la notte è giovane.
Yağmurun altında şarkı söylüyoruz.
Chúng ta cùng hát dưới ánh trăng.
เราร้องเพลงด้วยกันใต้แสงจันทร์
हम साथ में गाना गाते हैं।
نغني معا تحت ضوء القمر
"""


def corpus_lines() -> Iterator[str]:
    """All corpus lines, deterministic order."""
    yield from ENGLISH.splitlines()
    yield from OTHER_LANGUAGES.splitlines()
    # Deterministic combinations: caption-like lines the music prompts look like.
    for i, genre in enumerate(GENRES):
        inst = INSTRUMENTS[i % len(INSTRUMENTS)]
        inst2 = INSTRUMENTS[(i * 7 + 3) % len(INSTRUMENTS)]
        mood = MOODS[i % len(MOODS)]
        mood2 = MOODS[(i * 5 + 1) % len(MOODS)]
        yield f"{genre}, {inst}, {mood}"
        yield f"{mood2} {genre} song with {inst} and {inst2}, {60 + (i * 7) % 120} bpm"
    for i, tag in enumerate(STRUCTURE):
        line = ENGLISH.splitlines()[10 + i % 10]
        yield f"{tag}\n{line}"


def corpus_text() -> str:
    return "\n".join(corpus_lines())


def corpus_sha256() -> str:
    return hashlib.sha256(corpus_text().encode("utf-8")).hexdigest()
