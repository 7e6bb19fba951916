"""Making one song: the task (what to make), the composer (the steps and their order), where the
outputs go (layout), how failures read (failures) and who hears progress (observer)."""

from serve_app.songs.composer import SongComposer
from serve_app.songs.failures import SongFailed
from serve_app.songs.handles import LocalHandles, ModelHandles, RayHandles
from serve_app.songs.observer import MetricsObserver, Observers, SongObserver
from serve_app.songs.result import SongResult
from serve_app.songs.task import RenderOptions, SongTask

__all__ = ["LocalHandles", "MetricsObserver", "ModelHandles", "Observers", "RayHandles", "RenderOptions",
           "SongComposer", "SongFailed", "SongObserver", "SongResult", "SongTask"]
