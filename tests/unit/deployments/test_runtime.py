"""Start-up fails fast and says what to do when weights are missing (offline, as in production)."""

from __future__ import annotations

import pytest

from deployments.config import CoverArgs, LLMArgs, MusicArgs
from deployments.runtime import ModelNotAvailable


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("engine", ["llm", "music", "cover"])
def test_hub_model_missing_offline_names_the_fix(empty_cache, engine):
    from deployments.cover import CoverEngine
    from deployments.llm import LLMEngine
    from deployments.music import MusicEngine

    cls, args = {"llm": (LLMEngine, LLMArgs()), "music": (MusicEngine, MusicArgs()),
                 "cover": (CoverEngine, CoverArgs())}[engine]
    with pytest.raises(ModelNotAvailable) as exc:
        cls(args)
    msg = str(exc.value)
    assert args.model in msg and "python -m deployments.weights download" in msg


def test_missing_local_kit_points_to_make_setup(tmp_path):
    from deployments.music import MusicEngine

    with pytest.raises(ModelNotAvailable, match="make setup"):
        MusicEngine(MusicArgs(model=str(tmp_path / "no-such-kit")))
