"""API keys in the job database: `python -m serve_app.keys create|list|revoke|rotate|quota`.

    python -m serve_app.keys create --name alice [--quota songs_per_day=50 --quota active_songs=3]
    python -m serve_app.keys list
    python -m serve_app.keys rotate key_0123456789abcdef     # new secret, same songs and quotas
    python -m serve_app.keys revoke key_0123456789abcdef     # refused by every replica within seconds
    python -m serve_app.keys quota key_0123456789abcdef songs_per_day=unlimited audio_minutes_per_day=default

The database is found the way the ingress finds it: `--database-url`, else the env var named by
`jobs.database_url_env` (JOBS_DATABASE_URL), else the SQLite file `jobs.sqlite_path`
(var/jobs.db); `--config configs/prod.yaml` reads the `jobs:` section of a Serve config. Secrets
are printed once, on stdout, and never stored (the database holds their SHA-256). See
docs/tenants.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from serve_app.args import JobsArgs
from serve_app.jobs.keystore import QUOTA_NAMES, UNLIMITED, ApiKey

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def jobs_args(config: str | None, app: int = 0) -> JobsArgs:
    """The `jobs:` section of a Serve config's application (defaults without a config)."""
    if not config:
        return JobsArgs()
    import yaml

    doc = yaml.safe_load(Path(config).read_text())
    args = (doc.get("applications") or [{}])[app].get("args") or {}
    return JobsArgs.model_validate(args.get("jobs") or {})


def database_url(explicit: str | None, jobs: JobsArgs) -> str:
    """--database-url, else the ingress's rule: the env var, else the embedded SQLite file."""
    if explicit:
        return explicit
    from_env = os.environ.get(jobs.database_url_env)
    if from_env:
        return from_env
    path = Path(jobs.sqlite_path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def parse_quota(text: str) -> tuple[str, Any]:
    """NAME=VALUE with VALUE a number, `unlimited` (-1) or `default` (the config's)."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip().lower()
    if not sep or name not in QUOTA_NAMES:
        raise argparse.ArgumentTypeError(f"quota must be NAME=VALUE with NAME one of {', '.join(QUOTA_NAMES)}")
    if value == "default":
        return name, None
    if value == "unlimited":
        return name, UNLIMITED
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number, 'unlimited' or 'default'") from None
    return name, int(number) if number == int(number) and name != "audio_minutes_per_day" else number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serve_app.keys", description="Manage Songsmith API keys.")
    p.add_argument("--database-url", help="SQLAlchemy URL of the job database (default: as the ingress).")
    p.add_argument("--config", help="A Serve config whose jobs: section names the database (e.g. configs/prod.yaml).")
    p.add_argument("--json", action="store_true", help="Machine-readable output.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="Create a key and print its secret once.")
    c.add_argument("--name", required=True, help="Who or what the key is for.")
    c.add_argument("--quota", action="append", type=parse_quota, default=[], metavar="NAME=VALUE",
                   help=f"Override a default quota ({', '.join(QUOTA_NAMES)}); VALUE a number or 'unlimited'.")
    ls = sub.add_parser("list", help="List keys (never their secrets).")
    ls.add_argument("--active", action="store_true", help="Only keys that are not revoked.")
    r = sub.add_parser("revoke", help="Revoke a key; its queued and running songs are cancelled.")
    r.add_argument("id")
    r.add_argument("--keep-songs", action="store_true", help="Let its queued and running songs finish.")
    ro = sub.add_parser("rotate", help="Give a key a new secret (the old one stops working); songs are kept.")
    ro.add_argument("id")
    q = sub.add_parser("quota", help="Set a key's quota overrides (VALUE 'default' clears one).")
    q.add_argument("id")
    q.add_argument("quotas", nargs="+", type=parse_quota, metavar="NAME=VALUE")
    return p


def _line(key: ApiKey) -> str:
    state = "revoked" if key.revoked else "active"
    used = key.public()["last_used_at"] or "never"
    quotas = ", ".join(f"{n}={'unlimited' if v == UNLIMITED else f'{v:g}'}" for n, v in key.overrides.items())
    return f"{key.id}  {state:<7}  {key.name!r}  created {key.public()['created_at']}  last used {used}" + (
        f"  quotas: {quotas}" if quotas else "")


def _secret_notice(key: ApiKey, secret: str, verb: str) -> str:
    return (f"{verb} key {key.id} ({key.name!r}). Its secret, shown this once (only its SHA-256 is kept):\n\n"
            f"    {secret}\n\nSend it as `Authorization: Bearer <secret>`.")


def main(argv: list[str] | None = None, *, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    from serve_app.jobs.errors import JobStoreError
    from serve_app.jobs.store import JobStore

    try:
        store = JobStore(database_url(args.database_url, jobs_args(args.config)))
    except (JobStoreError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    try:
        return _run(args, store, out)
    except (JobStoreError, ValueError) as exc:  # KeyNotFound is a JobStoreError
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    finally:
        store.close()


def _run(args: argparse.Namespace, store, out) -> int:
    emit = (lambda doc, text: print(json.dumps(doc, indent=2), file=out)) if args.json else (
        lambda doc, text: print(text, file=out))
    if args.command == "create":
        key, secret = store.keys.create(args.name, dict(args.quota))
        emit({**key.public(), "secret": secret}, _secret_notice(key, secret, "Created"))
    elif args.command == "list":
        keys = store.keys.list(include_revoked=not args.active)
        emit([k.public() for k in keys], "\n".join(_line(k) for k in keys) or "no keys")
    elif args.command == "revoke":
        key, cancelled = store.revoke_key(args.id, cancel_jobs=not args.keep_songs)
        emit({**key.public(), "cancelled_songs": cancelled},
             f"Revoked key {key.id} ({key.name!r}); replicas refuse it within their key cache TTL (seconds). "
             f"{cancelled} queued or running song(s) cancelled.")
    elif args.command == "rotate":
        key, secret = store.keys.rotate(args.id)
        emit({**key.public(), "secret": secret},
             _secret_notice(key, secret, "Rotated") + " The old secret stops working within seconds.")
    elif args.command == "quota":
        key = store.keys.set_quotas(args.id, dict(args.quotas))
        emit(key.public(), _line(key))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
