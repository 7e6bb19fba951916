"""Edits on the kit: cover, repaint, extend (turbo) and extract, lego, complete (base), with the
controls, capabilities and refusals around them.

The dev kit cannot read a source (see music_kits.py), so edits run on `edit_kit` copies of it:
the same weights with a VAE encoder of the right width and a tiny random audio tokenizer; the base
copy differs from the turbo one only in its transformer config's is_turbo / model_version.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deployments import music
from deployments.audio_codec import MAX_SOURCE_S, decode, encode, load_source
from deployments.config import MusicArgs
from deployments.music import CROSSFADE_S, MusicEngine, MusicRequest, SongCancelled
from deployments.protocol import TRACK_NAMES, EngineError
from serve_app.localdev.cluster import MODELS
from tests.unit.deployments.music_kits import PipeSpy, edit_kit

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

SR = 48_000
XF = int(round(CROSSFADE_S * SR))
# Take 0 of an edit batch vs the edit alone: measured <= 5e-7 apart (float32 rounding); see test_music_takes.
BATCH_ATOL = 1e-5


def args(model) -> MusicArgs:
    return MusicArgs(model=str(model), num_threads=1, warmup=False)


@pytest.fixture(scope="module")
def kits_dir(kits, tmp_path_factory):
    return tmp_path_factory.mktemp("acestep-edit-kits")


@pytest.fixture(scope="module")
def turbo(kits_dir) -> MusicEngine:
    return MusicEngine(args(edit_kit(kits_dir / "turbo")))


@pytest.fixture(scope="module")
def base(kits_dir) -> MusicEngine:
    return MusicEngine(args(edit_kit(kits_dir / "base", turbo=False)))


@pytest.fixture(scope="module")
def dev_kit(kits) -> MusicEngine:
    return MusicEngine(args(MODELS / "acestep-v15-turbo-kit"))


def source_file(seconds: float = 2.01, rate: int = 44_100, amp: float = 0.3) -> bytes:
    """A stereo wav at 44.1 kHz whose 48 kHz length is no whole number of latent frames (1920 samples)."""
    t = np.arange(int(round(seconds * rate))) / rate
    left, right = amp * np.sin(2 * np.pi * 220 * t), amp * 0.5 * np.sin(2 * np.pi * 331 * t)
    return encode(np.stack([left, right]).astype(np.float32), rate, "wav")


SOURCE = source_file()


@pytest.fixture(scope="module")
def decoded() -> np.ndarray:
    """The source as the engine sees it: decoded and resampled to 48 kHz by load_source."""
    return load_source(SOURCE, SR, max_seconds=MAX_SOURCE_S)


def edit(task: str, **kw) -> MusicRequest:
    return MusicRequest(**{"tags": "rock, guitar", "lyrics": "[verse]\nagain", "task": task, "source_audio": SOURCE,
                           "steps": 2, "seed": 5, "duration_s": 2.0, **kw})


# -- every task: rate and length --


@pytest.mark.parametrize(("which", "task", "kw"), [
    ("turbo", "cover", {"cover_strength": 0.6}),
    ("turbo", "repaint", {"repaint_start_s": 0.5, "repaint_end_s": 1.3}),
    ("turbo", "extend", {"extend_s": 1.0}),
    ("base", "extract", {"track_name": "vocals"}),
    ("base", "lego", {"track_name": "drums"}),
    ("base", "complete", {"complete_tracks": ["bass", "drums"]}),
])
def test_every_edit_renders_48k_stereo_at_its_output_length(request, decoded, which, task, kw):
    engine = request.getfixturevalue(which)
    n = decoded.shape[1]
    assert n % 1920 != 0  # the source is padded to whole latent frames and the output trimmed back
    want = n + int(round(kw.get("extend_s", 0.0) * SR))
    [res] = engine.generate(edit(task, **kw))
    frames, sr = decode(res.audio)
    assert (sr, res.sample_rate, res.channels) == (SR, SR, 2)
    assert frames.shape == (want, 2) and res.num_samples == want and res.task == task
    assert np.abs(frames).max() > 1e-3  # audio, not silence


def test_text2music_renders_lengths_whose_frame_count_the_pipeline_used_to_overshoot(dev_kit):
    """diffusers' prepare_latents re-derives the latent length from seconds (ceil(frames / 25 * 25))
    and got one frame too many at 2.2 s, 4.4 s, ... (1 length in 16), failing the render."""
    for seconds in (2.2, 4.4):
        [song] = dev_kit.render(MusicRequest(tags="pop", duration_s=seconds, steps=1, seed=1))
        assert song.audio.shape == (2, int(round(seconds * SR)))


# -- repaint and extend keep the source --


def test_repaint_keeps_every_sample_outside_the_window_bit_identical(turbo, decoded):
    a, b = int(0.5 * SR), int(1.3 * SR)
    [song] = turbo.render(edit("repaint", repaint_start_s=0.5, repaint_end_s=1.3))
    out = song.audio
    assert out.shape == decoded.shape and out.dtype == np.float32
    assert np.array_equal(out[:, :a], decoded[:, :a]) and np.array_equal(out[:, b:], decoded[:, b:])
    assert np.abs(out[:, a + XF: b - XF] - decoded[:, a + XF: b - XF]).max() > 1e-2  # the window is new


def test_repaint_to_the_end_and_from_the_start(turbo, decoded):
    n = decoded.shape[1]
    [tail] = turbo.render(edit("repaint", repaint_start_s=1.0))  # no end: to the source's end
    assert np.array_equal(tail.audio[:, :SR], decoded[:, :SR])
    [head] = turbo.render(edit("repaint", repaint_end_s=1.0))  # no start: from 0
    assert np.array_equal(head.audio[:, SR:], decoded[:, SR:]) and head.audio.shape[1] == n


def test_repaint_matches_the_new_parts_level_to_a_quiet_source(turbo, monkeypatch):
    """The pipeline peak-normalizes its whole output to -1 dBFS: without re-levelling, a window
    repainted into a -20 dBFS source comes out ~20 dB louder than the audio around it."""
    quiet = source_file(amp=0.1)
    src = load_source(quiet, SR, max_seconds=MAX_SOURCE_S)
    req = edit("repaint", source_audio=quiet, repaint_start_s=0.5, repaint_end_s=1.5)
    inner = slice(int(0.5 * SR) + XF, int(1.5 * SR) - XF)
    [matched] = turbo.render(req)
    monkeypatch.setattr(music, "match_level", lambda *a, **k: 1.0)
    [raw] = turbo.render(req)

    def db(x):
        return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))))

    source_db = db(src[:, inner])
    assert db(raw.audio[:, inner]) - source_db > 10  # what the normalization alone does
    assert abs(db(matched.audio[:, inner]) - source_db) < 1.0  # re-levelled (measured 0.0 dB on the kit)
    [note] = [n for n in matched.notes if "level matched" in n]
    gain = 10 ** (float(note.split("(")[1].split(" dB")[0]) / 20)
    assert np.allclose(matched.audio[:, inner], raw.audio[:, inner] * gain, rtol=2e-2, atol=1e-6)


def test_extend_keeps_the_source_and_adds_extend_s(turbo, decoded):
    n = decoded.shape[1]
    [song] = turbo.render(edit("extend", extend_s=1.5))
    assert song.audio.shape == (2, n + int(1.5 * SR))
    assert np.array_equal(song.audio[:, :n], decoded)
    new = song.audio[:, n + XF:]
    assert np.sqrt(np.mean(np.square(new, dtype=np.float64))) > 1e-3  # the added part is audio, not the padding


def test_an_extend_over_600_s_in_all_is_refused_before_decoding(turbo):
    with pytest.raises(ValueError, match=r"2\.0 s source plus 599 s is 601\.0 s, over the 600 s"):
        turbo.render(edit("extend", extend_s=599.0))
    with pytest.raises(ValueError, match="extend_s > 0"):
        turbo.render(edit("extend", extend_s=0.0))


@pytest.mark.parametrize(("kw", "words"), [
    ({"repaint_start_s": 1.5, "repaint_end_s": 1.0}, "0 <= repaint_start_s < repaint_end_s"),
    ({"repaint_start_s": 1.0, "repaint_end_s": 3.0}, "past the source's end"),
    ({"repaint_start_s": -1.0, "repaint_end_s": 1.0}, "0 <= repaint_start_s"),
])
def test_a_repaint_window_outside_the_source_is_refused(turbo, kw, words):
    with pytest.raises(ValueError, match=words):
        turbo.render(edit("repaint", **kw))


def test_take_0_of_an_edit_batch_is_the_edit_alone_and_edits_reproduce(turbo, decoded):
    req = dict(repaint_start_s=0.4, repaint_end_s=1.6)
    [alone] = turbo.render(edit("repaint", **req))
    [again] = turbo.render(edit("repaint", **req))
    assert np.array_equal(alone.audio, again.audio)  # the source's VAE sampling is seeded too
    batch = turbo.render(edit("repaint", takes=2, **req))
    assert [s.seed for s in batch] == [5, 6]
    assert np.allclose(batch[0].audio, alone.audio, rtol=0, atol=BATCH_ATOL)
    inner = slice(int(0.4 * SR) + XF, int(1.6 * SR) - XF)
    assert np.abs(batch[0].audio[:, inner] - batch[1].audio[:, inner]).max() > 1e-3
    for s in batch:  # every take keeps the source around its window
        assert np.array_equal(s.audio[:, : int(0.4 * SR)], decoded[:, : int(0.4 * SR)])


# -- what reaches the pipeline --


def test_controls_and_task_arguments_reach_the_pipeline(turbo, base, monkeypatch):
    spy = PipeSpy(turbo.pipe)
    monkeypatch.setattr(turbo, "pipe", spy)
    [song] = turbo.render(edit("cover", cover_strength=0.4, bpm=120, keyscale=" A minor ", timesignature="3/4",
                               vocal_language=""))
    kw = spy.calls[-1]
    assert (kw["task_type"], kw["audio_cover_strength"]) == ("cover", 0.4)
    assert (kw["bpm"], kw["keyscale"], kw["timesignature"], kw["vocal_language"]) == (120, "A minor", "3", "unknown")
    assert kw["src_audio"].shape[-1] % 1920 == 0  # padded to whole latent frames
    assert any("timesignature '3/4' read as '3'" in n for n in song.notes)
    turbo.render(MusicRequest(tags="pop", duration_s=2.0, steps=1, seed=0))  # nothing set: the model decides
    kw = spy.calls[-1]
    assert (kw["bpm"], kw["keyscale"], kw["timesignature"], kw["vocal_language"]) == (None, None, None, "en")
    assert "src_audio" not in kw and "task_type" not in kw
    turbo.render(edit("extend", extend_s=1.0))
    kw = spy.calls[-1]
    assert kw["task_type"] == "repaint" and kw["repainting_start"] < kw["repainting_end"]

    bspy = PipeSpy(base.pipe)
    monkeypatch.setattr(base, "pipe", bspy)
    base.render(edit("extract", track_name="drums"))
    base.render(edit("complete", complete_tracks=["bass", "keyboard"]))
    assert (bspy.calls[0]["task_type"], bspy.calls[0]["track_name"]) == ("extract", "drums")
    assert bspy.calls[1]["complete_track_classes"] == ["bass", "keyboard"]
    assert bspy.calls[0]["guidance_scale"] == 7.0  # base checkpoints guide by default


def test_an_edit_says_when_its_duration_s_is_not_the_output_length(turbo):
    [song] = turbo.render(edit("cover", duration_s=30.0))
    assert any("duration_s 30 ignored: cover output is as long as the source (2.01 s)" in n for n in song.notes)
    [fits] = turbo.render(edit("cover", duration_s=2.01))
    assert not any("duration_s" in n for n in fits.notes)


# -- capabilities and refusals --


def test_capabilities_say_what_each_checkpoint_runs(turbo, base, dev_kit):
    caps = turbo.capabilities()
    assert caps.is_turbo and caps.sample_rate == SR and caps.tasks == ["text2music", "cover", "repaint", "extend"]
    assert caps.track_names == [] and caps.max_takes == 4
    assert set(caps.unavailable) == {"extract", "lego", "complete"}
    assert caps.unavailable["extract"] == "needs a base (non-turbo) ACE-Step checkpoint; this replica runs a turbo one"
    caps = base.capabilities()
    assert not caps.is_turbo
    assert caps.tasks == ["text2music", "cover", "repaint", "extend", "extract", "lego", "complete"]
    assert caps.track_names == list(TRACK_NAMES) and caps.unavailable == {}
    # The dev kit (v2) runs what a turbo checkpoint runs; the base kit (`music_base` in dev and
    # the e2e tests) what a base one runs.
    assert dev_kit.capabilities().tasks == ["text2music", "cover", "repaint", "extend"]
    base_kit = MusicEngine(args(MODELS / "acestep-v15-base-kit")).capabilities()
    assert not base_kit.is_turbo and base_kit.tasks == caps.tasks and base_kit.unavailable == {}
    # A checkpoint whose VAE encoder is narrower than the transformer's latents cannot read a
    # source (the dev kit before v2): text2music only, and each edit says why.
    import copy
    from types import SimpleNamespace

    narrow = copy.copy(dev_kit)
    narrow.pipe = SimpleNamespace(vae=SimpleNamespace(config=SimpleNamespace(encoder_hidden_size=8)),
                                  transformer=dev_kit.pipe.transformer, audio_tokenizer=None,
                                  audio_token_detokenizer=None)
    tasks, missing = narrow._supported_tasks()
    assert tasks == ["text2music"] and set(missing) == {"cover", "repaint", "extend", "extract", "lego", "complete"}
    assert "VAE encodes 4-channel latents where its transformer takes 16" in missing["repaint"]


@pytest.mark.parametrize("task", ["extract", "lego", "complete"])
def test_base_only_tasks_are_refused_on_turbo(turbo, dev_kit, task):
    for engine in (turbo, dev_kit):
        with pytest.raises(ValueError) as err:
            engine.render(edit(task, track_name="vocals"))
        assert str(err.value) == (f"task '{task}' needs a base (non-turbo) ACE-Step checkpoint; "
                                  "this replica runs a turbo one")


def test_an_edit_without_a_source_or_with_a_broken_one_is_refused(turbo):
    with pytest.raises(ValueError, match="needs source_audio"):
        turbo.render(edit("cover", source_audio=None))
    with pytest.raises(ValueError, match="not a readable wav, flac, mp3 or ogg file"):
        turbo.render(edit("cover", source_audio=b"\x00" * 512))
    with pytest.raises(ValueError, match="task must be text2music or one of"):
        turbo.render(edit("remix"))


# -- progress, cancel and out-of-memory, as for text2music --


def test_an_edit_reports_every_step_and_cancels_within_one(turbo):
    seen = []
    turbo.render(edit("repaint", steps=3, repaint_start_s=0.5), progress=lambda k, n: seen.append((k, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    cancel, steps = threading.Event(), []

    def progress(k, n):
        steps.append(k)
        cancel.set()

    with pytest.raises(SongCancelled):
        turbo.render(edit("extend", steps=3, extend_s=1.0), progress=progress, cancel=cancel)
    assert steps == [1]


def test_out_of_memory_in_an_edit_is_an_engine_error(turbo, monkeypatch):
    monkeypatch.setenv("SONGSMITH_FAULTS", '{"music_oom_tag": "boom"}')
    with pytest.raises(EngineError, match="out of GPU memory rendering 2 take"):
        turbo.render(edit("cover", tags="boom", takes=2))
