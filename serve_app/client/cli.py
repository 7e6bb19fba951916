"""`songsmith`: the command line of the Songsmith API (docs/clients.md has every command).

    songsmith generate "a slow waltz about the sea" --duration 30 --out waltz/
    songsmith edit repaint <song id>:1 --start 20 --end 35
    songsmith list --status succeeded
    songsmith mcp                      # an MCP server on stdio, for desktop assistants

The server and token come from --url/--token or SONGSMITH_URL/SONGSMITH_TOKEN. `--json` prints
only JSON on stdout (messages go to stderr). Exit codes: 0 done, 1 the song failed or was
cancelled (or the service is degraded), 2 bad usage, 3 the server refused the request (its
message is printed), 4 the server could not be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx

from ._common import (
    DEFAULT_URL,
    EDIT_TASKS,
    TERMINAL_STATUSES,
    TOKEN_ENV,
    URL_ENV,
    SongFailed,
    SongsmithConnectionError,
    SongsmithError,
    drop_none,
    song_mode_fields,
)
from .client import Songsmith
from .progress import JobProgress, ProgressBar

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
AUDIO_FORMATS = ("wav", "flac", "mp3", "opus")
TRACKS = ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass", "drums",
          "backing_vocals", "vocals")
TIME_SIGNATURES = {"2": "2", "3": "3", "4": "4", "6": "6", "2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}
SOURCE_ID = re.compile(r"^([0-9a-f]{32})(?::(\d+))?$")


class UsageError(Exception):
    """Bad arguments found after parsing (exit 2)."""


class Interrupted(Exception):
    """Ctrl-C while following a song (exit 130)."""


# ---------------------------------------------------------------- output


def out(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """JSON on stdout with --json, else the human text (when there is any)."""
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif text is not None:
        print(text)


def note(args: argparse.Namespace, text: str) -> None:
    """A message for the person (stderr), unless --quiet."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


def song_title(job: dict) -> str:
    result = job.get("result") or {}
    return result.get("title") or ""


def describe_job(job: dict) -> str:
    lines = [f"{job['id']}  {job['status']}  {job['mode']}" + (f"  \"{song_title(job)}\"" if song_title(job) else "")]
    if job["status"] == "running":
        progress = job.get("progress") or {}
        step = f" step {progress['step']}/{progress['total']}" if progress.get("total") else ""
        lines.append(f"  stage: {job.get('stage') or 'starting'}{step}")
    if job["status"] == "queued" and job.get("queue_position"):
        lines.append(f"  queue position: {job['queue_position']}")
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    if job.get("parent_id"):
        lines.append(f"  made from: {job['parent_id']}")
    result = job.get("result")
    if result:
        lines.append(f"  {result['duration_s']:g} s {result['audio_format']}, seed {result['seed']}, "
                     f"tags: {', '.join(result.get('tags') or [])}")
        for take in result.get("takes") or []:
            lines.append(f"  take {take['take']}: {take['audio_url']}")
        lines.append(f"  cover: {result['cover_image_url']}")
    finished = f", finished {job['finished_at']}" if job.get("finished_at") else ""
    lines.append(f"  created {job['created_at']}{finished}")
    return "\n".join(lines)


def job_row(job: dict) -> str:
    return f"{job['id']}  {job['status']:<9}  {job['mode']:<16}  {job['created_at'][:19]}  {song_title(job)}"


# ---------------------------------------------------------------- following a song


def _confirm(question: str) -> bool:
    """Ask on the terminal; no terminal (or Ctrl-C / EOF again) means no."""
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        print(question, end="", file=sys.stderr, flush=True)
        return input().strip().lower() in ("y", "yes")
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return False


def follow(api: Songsmith, job_id: str, args: argparse.Namespace) -> dict:
    """Wait for the job with a live bar on a terminal's stderr; Ctrl-C offers to cancel it."""
    progress = JobProgress()
    bar = ProgressBar(sys.stderr, prefix=f"{job_id[:8]} ")
    bar.enabled = bar.enabled and not args.quiet

    def on_event(event) -> None:
        if progress.update(event):
            bar.show(progress)

    try:
        return api.wait(job_id, on_event=on_event)
    except KeyboardInterrupt:
        bar.close()
        if _confirm("cancel the job? [y/N] "):
            job = api.cancel(job_id)
            note(args, f"cancelled song {job_id}" if job["status"] in TERMINAL_STATUSES else
                 f"cancel requested: song {job_id} stops at its next step")
        else:
            note(args, f"song {job_id} keeps running: `songsmith get {job_id}`, `songsmith download {job_id}`, "
                       f"`songsmith cancel {job_id}`")
        raise Interrupted from None
    finally:
        bar.close()


def finish_song(api: Songsmith, job: dict, args: argparse.Namespace) -> int:
    """After submitting: wait, download, report (shared by generate and edit)."""
    note(args, f"song {job['id']} {job['status']}" + (f" (queue position {job['queue_position']})"
                                                      if job.get("queue_position") else ""))
    if args.no_wait:
        out(args, job, job["id"])
        return EXIT_OK
    job = follow(api, job["id"], args)
    if job["status"] != "succeeded":
        print(f"songsmith: song {job['id']} {job['status']}: {job.get('error') or job['status']}", file=sys.stderr)
        out(args, {"job": job, "download": None})
        return EXIT_FAILED
    downloaded = None
    if not args.no_download:
        downloaded = api.download(job, Path(args.out) if args.out else Path.cwd() / job["id"])
    if args.json:
        out(args, {"job": job, "download": downloaded.to_dict() if downloaded else None})
        return EXIT_OK
    result = job["result"]
    print(f"\"{result['title']}\"  ({job['id']}, {result['duration_s']:g} s, {len(result.get('takes') or [1])} "
          f"take(s))")
    if downloaded:
        for path in downloaded.files:
            print(f"  {path}")
    else:
        for take in result.get("takes") or []:
            print(f"  take {take['take']}: {take['audio_url']}")
    return EXIT_OK


# ---------------------------------------------------------------- commands


def read_lyrics(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the lyrics file {path}: {exc.strerror or exc}") from None


def controls(args: argparse.Namespace) -> dict[str, Any]:
    """The rendering options generate and edit share, in the API's names."""
    return drop_none({"seed": args.seed, "infer_step": args.steps, "guidance_scale": args.guidance,
                      "audio_format": args.format, "variations": args.variations, "bpm": args.bpm,
                      "keyscale": args.key, "timesignature": args.time_signature,
                      "vocal_language": args.language, "webhook_url": args.webhook})


def cmd_generate(api: Songsmith, args: argparse.Namespace) -> int:
    lyrics = read_lyrics(args.lyrics) if args.lyrics is not None else None
    try:
        mode = song_mode_fields(args.description, args.tags, lyrics, args.described_lyrics)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fields = {**mode, **controls(args), "audio_duration": args.duration,
              "instrumental": True if args.instrumental else None}
    job = api.create_song(idempotency_key=args.idempotency_key, **drop_none(fields))
    return finish_song(api, job, args)


def parse_source(api: Songsmith, text: str, args: argparse.Namespace) -> dict[str, Any]:
    """A song id, `song_id:take`, or a local audio file (uploaded first)."""
    m = SOURCE_ID.match(text.strip().lower())
    if m:
        return {"song_id": m[1], "take": int(m[2]) if m[2] is not None else None}
    path = Path(text).expanduser()
    if path.is_file():
        up = api.upload(path)
        note(args, f"uploaded {path} as {up['upload_id']} ({up['duration_s']:.1f} s)")
        return {"upload_id": up["upload_id"]}
    raise UsageError(f"SOURCE {text!r} is not a song id (32 hex digits), a song_id:take or an audio file")


def cmd_edit(api: Songsmith, args: argparse.Namespace) -> int:
    source = parse_source(api, args.source, args)
    fields = {"prompt": args.tags, "lyrics": read_lyrics(args.lyrics) if args.lyrics is not None else None,
              "repaint_start_s": args.start, "repaint_end_s": args.end, "extend_s": args.extend,
              "cover_strength": args.strength, "track_name": args.track,
              "complete_tracks": args.tracks, **controls(args)}
    job = api.create_edit(args.task, idempotency_key=args.idempotency_key, **source, **drop_none(fields))
    return finish_song(api, job, args)


def cmd_list(api: Songsmith, args: argparse.Namespace) -> int:
    if args.all:
        items = list(api.iter_songs(status=args.status, mode=args.mode))
        page = {"items": items, "next_cursor": None}
    else:
        page = api.list_songs(limit=args.limit, cursor=args.cursor, status=args.status, mode=args.mode)
    rows = [job_row(j) for j in page["items"]] or ["(no songs)"]
    if page.get("next_cursor"):
        rows.append(f"more: songsmith list --cursor {page['next_cursor']}")
    out(args, page, "\n".join(rows))
    return EXIT_OK


def cmd_get(api: Songsmith, args: argparse.Namespace) -> int:
    job = api.get_song(args.id)
    out(args, job, describe_job(job))
    return EXIT_OK


def cmd_edits(api: Songsmith, args: argparse.Namespace) -> int:
    page = api.edits(args.id, limit=args.limit)
    out(args, page, "\n".join(job_row(j) for j in page["items"]) or "(no edits)")
    return EXIT_OK


def cmd_cancel(api: Songsmith, args: argparse.Namespace) -> int:
    job = api.cancel(args.id)
    text = (f"song {job['id']} {job['status']}" if job["status"] in TERMINAL_STATUSES
            else f"song {job['id']}: cancel requested (it stops at its next step)")
    out(args, job, text)
    return EXIT_OK


def cmd_delete(api: Songsmith, args: argparse.Namespace) -> int:
    api.delete(args.id)
    out(args, {"id": args.id, "deleted": True}, f"deleted song {args.id}")
    return EXIT_OK


def cmd_upload(api: Songsmith, args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    up = api.upload(path)
    out(args, up, f"{up['upload_id']}  {up['duration_s']:.2f} s  (edit it: songsmith edit cover {path} ... or "
                  f"with source.upload_id {up['upload_id']})")
    return EXIT_OK


def cmd_download(api: Songsmith, args: argparse.Namespace) -> int:
    job = api.get_song(args.id)
    if job["status"] != "succeeded":
        raise SongFailed(job) if job["status"] in TERMINAL_STATUSES else SongsmithError(
            None, f"song {job['id']} is {job['status']}; download it when it has succeeded")
    downloaded = api.download(job, Path(args.out) if args.out else Path.cwd() / job["id"])
    out(args, downloaded.to_dict(), "\n".join(str(p) for p in downloaded.files))
    return EXIT_OK


def cmd_health(api: Songsmith, args: argparse.Namespace) -> int:
    health = api.health()
    lines = [f"{api.base_url}: {health.get('status')}"]
    for name, dep in sorted((health.get("deployments") or {}).items()):
        lines.append(f"  {name:<8} {'ready' if dep.get('ready') else 'NOT READY'}  {dep.get('detail', '')}")
    out(args, health, "\n".join(lines))
    return EXIT_OK if health.get("status") == "ok" else EXIT_FAILED


def cmd_capabilities(api: Songsmith, args: argparse.Namespace) -> int:
    caps = api.capabilities()
    lines = [f"tasks: {', '.join(caps['tasks'])}"]
    lines += [f"  not here: {task} {why}" for task, why in caps.get("unavailable", {}).items()]
    if caps.get("track_names"):
        lines.append(f"tracks: {', '.join(caps['track_names'])}")
    lines.append(f"takes: 1-{caps['max_variations']}; duration {caps['min_duration_s']:g}-{caps['max_duration_s']:g} s; "
                 f"formats: {', '.join(caps['audio_formats'])}")
    out(args, caps, "\n".join(lines))
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    from .mcp_server import run

    run(args.url, args.token)
    return EXIT_OK


# ---------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _time_signature(text: str) -> str:
    try:
        return TIME_SIGNATURES[text.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError("one of 2, 3, 4, 6 (or 2/4, 3/4, 4/4, 6/8)") from None


def _tracks(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TRACKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"comma-separated track names from: {', '.join(TRACKS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    # The connection and output flags work before or after the command (`songsmith --json list`
    # or `songsmith list --json`): the parent's SUPPRESS defaults let either one set them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"server base URL (default: ${URL_ENV}, else {DEFAULT_URL})")
    common.add_argument("--token", default=argparse.SUPPRESS, help=f"bearer token (default: ${TOKEN_ENV})")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds per HTTP request (default 60)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON only on stdout")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bar or notes on stderr")

    parser = argparse.ArgumentParser(prog="songsmith", parents=[common],
                                     description="Songsmith music generation: the command line of its API.",
                                     epilog="Exit codes: 0 done, 1 the song failed or was cancelled (health: "
                                            "degraded), 2 bad usage, 3 the server refused the request, "
                                            "4 the server could not be reached, 130 interrupted.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=help_)

    def song_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("rendering")
        g.add_argument("--format", choices=AUDIO_FORMATS, help="audio format (default wav)")
        g.add_argument("--variations", type=_positive_int, metavar="N", help="takes of the song, 1-4 (default 1)")
        g.add_argument("--seed", type=int, help="seed (-1 or omitted: random; the used seed is reported)")
        g.add_argument("--steps", type=_positive_int, metavar="N", help="diffusion steps (default: the model's)")
        g.add_argument("--guidance", type=float, metavar="G", help="guidance scale (turbo checkpoints ignore it)")
        g.add_argument("--bpm", type=int, help="tempo, 30-300")
        g.add_argument("--key", metavar="KEY", help='key, e.g. "A minor", "F# major"')
        g.add_argument("--time-signature", type=_time_signature, metavar="T", help="2, 3, 4 or 6 (or 3/4, 6/8...)")
        g.add_argument("--language", metavar="L", help="vocal language (ISO 639-1, e.g. en)")
        g.add_argument("--webhook", metavar="URL", help="POSTed the job when it ends")
        g.add_argument("--idempotency-key", metavar="K", help="the same key and body give back the same job")
        o = p.add_argument_group("result")
        o.add_argument("--out", metavar="DIR", help="where to download the files (default: ./<song id>/)")
        o.add_argument("--no-download", action="store_true", help="print the links instead of downloading")
        o.add_argument("--no-wait", action="store_true", help="submit, print the job id and exit")

    p = command("generate", "make a song, follow it and download it")
    p.add_argument("description", nargs="?", help="what the song should be (with --lyrics: the tags, "
                                                  "unless --tags is given)")
    words = p.add_mutually_exclusive_group()
    words.add_argument("--lyrics", metavar="FILE", help="lyrics to sing as written ('-' reads stdin)")
    words.add_argument("--described-lyrics", metavar="TEXT", help="what the LLM should write the lyrics about")
    p.add_argument("--tags", help="comma-separated music tags (with a description alone: the LLM writes lyrics "
                                  "about the description)")
    p.add_argument("--instrumental", action="store_true", help="no vocals")
    p.add_argument("--duration", type=float, metavar="S", help="length in seconds, 10-600 (default 180)")
    song_options(p)
    p.set_defaults(run=cmd_generate)

    p = command("edit", "make a new song from one of yours or from an audio file")
    p.add_argument("task", choices=EDIT_TASKS, help="cover, repaint, extend (extract, lego, complete need a base "
                                                    "checkpoint)")
    p.add_argument("source", metavar="SOURCE", help="a song id, song_id:take, or an audio file (uploaded first)")
    p.add_argument("--tags", help="tags for the new audio (default: the source song's; required for a file)")
    p.add_argument("--lyrics", metavar="FILE", help="lyrics for the new audio (default: the source song's)")
    p.add_argument("--start", "--repaint-start", dest="start", type=float, metavar="S",
                   help="repaint: start of the range written anew (repaint_start_s)")
    p.add_argument("--end", "--repaint-end", dest="end", type=float, metavar="S",
                   help="repaint: end of the range (repaint_end_s)")
    p.add_argument("--extend", type=float, metavar="S", help="extend: seconds added after the end (extend_s)")
    p.add_argument("--strength", type=float, metavar="F", help="cover: 0-1, 1 follows the source closely "
                                                               "(cover_strength)")
    p.add_argument("--track", choices=TRACKS, help="extract / lego: the stem (track_name)")
    p.add_argument("--tracks", type=_tracks, metavar="A,B", help="complete: tracks to add (complete_tracks)")
    song_options(p)
    p.set_defaults(run=cmd_edit)

    p = command("list", "your songs, newest first")
    p.add_argument("--limit", type=_positive_int, help="page size, 1-100 (default 20)")
    p.add_argument("--cursor", help="next page (printed after a full page)")
    p.add_argument("--status", action="append", choices=("queued", "running", "succeeded", "failed", "cancelled"),
                   help="only this status (repeatable)")
    p.add_argument("--mode", action="append", help="only this kind: description, lyrics, described_lyrics or an "
                                                   "edit task (repeatable)")
    p.add_argument("--all", action="store_true", help="every page")
    p.set_defaults(run=cmd_list)

    for name, help_, fn in (("get", "a song's status, progress, error or result", cmd_get),
                            ("cancel", "cancel a queued or running song", cmd_cancel),
                            ("delete", "delete a song and its files", cmd_delete),
                            ("edits", "the songs made from a song", cmd_edits)):
        p = command(name, help_)
        p.add_argument("id", metavar="ID", help="song id")
        if name == "edits":
            p.add_argument("--limit", type=_positive_int)
        p.set_defaults(run=fn)

    p = command("upload", "upload an audio file to edit (wav, flac, mp3, ogg)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(run=cmd_upload)

    p = command("download", "download a finished song's audio, cover and song.json")
    p.add_argument("id", metavar="ID")
    p.add_argument("--out", metavar="DIR", help="directory (default: ./<song id>/)")
    p.set_defaults(run=cmd_download)

    p = command("health", "is the service ready (no token needed)")
    p.set_defaults(run=cmd_health)

    p = command("capabilities", "what this server can make: tasks (and why not the others), tracks, ranges")
    p.set_defaults(run=cmd_capabilities)

    p = command("mcp", "run the MCP server on stdio (for desktop assistants)")
    p.set_defaults(run=None)
    return parser


def _error(args: argparse.Namespace, code: int, message: str, status: int | None = None) -> int:
    print(f"songsmith: error: {message}" + (f" (HTTP {status})" if status else ""), file=sys.stderr)
    if getattr(args, "json", False):
        out(args, {"error": {"status": status, "message": message, "exit_code": code}})
    return code


def main(argv: list[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """The `songsmith` command. `transport` (an httpx transport) is for tests and embedding."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for name, default in (("url", None), ("token", None), ("timeout", 60.0), ("json", False), ("quiet", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.command == "mcp":
        return cmd_mcp(args)
    try:
        api = Songsmith(args.url, args.token, timeout=args.timeout, transport=transport)
    except ValueError as exc:  # a bad --url
        return _error(args, EXIT_USAGE, str(exc))
    try:
        with api:
            return args.run(api, args)
    except UsageError as exc:
        return _error(args, EXIT_USAGE, str(exc))
    except SongFailed as exc:
        return _error(args, EXIT_FAILED, exc.message)
    except SongsmithConnectionError as exc:
        return _error(args, EXIT_UNREACHABLE, exc.message)
    except SongsmithError as exc:
        return _error(args, EXIT_REFUSED if exc.status else EXIT_FAILED, exc.message, exc.status)
    except Interrupted:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
