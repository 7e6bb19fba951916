"""Download and verify the model weights a Serve config names, so replicas can start offline.

    python -m deployments.weights download --config configs/prod.yaml [--app 0]
    python -m deployments.weights verify   --config configs/prod.yaml [--app 0]

Reads `applications[<app>].args.{llm,music,cover,music_base}.engine.model` (defaults: the production ids in
`deployments.config`) and `cover.engine.vae` (a separate VAE the cover engine loads in place of its
pipeline's own, e.g. madebyollin/sdxl-vae-fp16-fix). Hugging Face ids go to the hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`,
the same cache the engines read); local directories (the dev kits) are only checked.

`download` fetches only what the engines load: for the LLM the root config/tokenizer/safetensors
files; for SDXL-Turbo the fp16 variant the CUDA replica loads (not the full-precision copies, the
single-file checkpoints or the ONNX exports, and not its vae/ when `cover.engine.vae` replaces it); for
the cover VAE its diffusers `config.json` and weights (not the single-file copies); for ACE-Step everything except audio samples and
`.bin` duplicates of safetensors weights. `verify` needs no network: it checks refs/main, every
component of a diffusers pipeline, every shard listed in a weights index, the tokenizer, and
(when huggingface_hub cached the repo's file listing at download time) every expected file and
its size. It prints a table and exits 1 with the command to run when anything is missing.

Imports no torch, ray or transformers: it runs in setup scripts before any of them matter.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deployments.config import CoverArgs, EngineArgs, LLMArgs, MusicArgs, is_local_model

ROLES: tuple[tuple[str, type[EngineArgs]], ...] = (("llm", LLMArgs), ("music", MusicArgs), ("cover", CoverArgs),
                                                   ("music_base", MusicArgs))
OPTIONAL_ROLES = frozenset({"music_base"})  # a second music deployment: only when the config has one
REVISION = "main"  # the engines load the default branch

EXIT_OK, EXIT_MISSING, EXIT_ERROR = 0, 1, 2

# Weight files: `model.safetensors`, `model-00001-of-00004.safetensors`, `model.fp16.safetensors`,
# `diffusion_pytorch_model.fp16-00001-of-00002.safetensors`, `pytorch_model.bin`, ...
_WEIGHT_RE = re.compile(r"^[^.]+(?:\.(?P<variant>[^.\-]+))?(?:-\d{5}-of-\d{5})?\.(?P<fmt>safetensors|bin)$")
# Their indexes: `model.safetensors.index.json`, `diffusion_pytorch_model.safetensors.index.fp16.json`.
_INDEX_RE = re.compile(r"^[^.]+\.(?P<fmt>safetensors|bin)\.index(?:\.(?P<variant>[^.]+))?\.json$")

AUDIO_SAMPLES = ("*.wav", "*.mp3", "*.flac", "*.ogg", "*.opus", "*.m4a", "*.aac", "*.aiff")
LLM_FILES = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.tiktoken", "*.jinja", "tokenizer*")
PIPELINE_COMPONENT_FILES = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.jinja", "tokenizer*")
DIFFUSERS_WEIGHTS_STEM = "diffusion_pytorch_model"  # what a diffusers ModelMixin.from_pretrained reads
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "tokenizer.tiktoken")

# Which weight variant each role's engine asks diffusers for (see deployments/cover.py).
_FP16_DTYPES = ("auto", "float16")  # "auto" is fp16 on the CUDA replicas that load these weights


class WeightsError(Exception):
    """A config or usage problem (exit 2)."""


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class ModelSpec:
    role: str  # llm | music | cover | music_base | cover_vae
    model: str  # a hub id, or a local directory as written in the config
    variant: str | None = None  # diffusers weight variant the engine loads, e.g. "fp16"
    skip: tuple[str, ...] = ()  # pipeline components the engine loads from elsewhere (cover: vae)

    @property
    def field(self) -> str:
        """Where the config names this model."""
        return "cover.engine.vae" if self.role == "cover_vae" else f"{self.role}.engine.model"

    @property
    def local(self) -> bool:
        return is_local_model(self.model)

    @property
    def local_path(self) -> Path:
        return Path(self.model).expanduser().resolve()


def load_specs(config_path: str | Path, app: str = "0") -> list[ModelSpec]:
    path = Path(config_path)
    if not path.is_file():
        raise WeightsError(f"config {str(config_path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise WeightsError(f"config {str(config_path)!r} is not valid YAML: {exc}") from exc
    apps = data.get("applications") if isinstance(data, dict) else None
    if not isinstance(apps, list) or not apps:
        raise WeightsError(f"config {str(config_path)!r} has no `applications:` list (is it a Serve config?)")
    application = _pick_app(apps, app, config_path)
    args = application.get("args") or {}
    if not isinstance(args, dict):
        raise WeightsError(f"applications[{app}].args in {str(config_path)!r} is not a mapping")
    specs = []
    for role, cls in ROLES:
        if role in OPTIONAL_ROLES and not args.get(role):
            continue
        section = args.get(role) or {}
        engine = (section.get("engine") if isinstance(section, dict) else None) or {}
        try:
            engine_args = cls.model_validate(engine)
        except Exception as exc:  # pydantic.ValidationError: typos, bad values
            raise WeightsError(f"{role}.engine in {str(config_path)!r} is invalid: {exc}") from exc
        variant = "fp16" if role == "cover" and engine_args.dtype in _FP16_DTYPES else None
        vae = getattr(engine_args, "vae", None) if role == "cover" else None
        specs.append(ModelSpec(role=role, model=engine_args.model, variant=variant, skip=("vae",) if vae else ()))
        if vae:  # loaded without a variant (deployments/cover.py): the fp16-fix VAE ships one set of weights
            specs.append(ModelSpec(role="cover_vae", model=vae))
    return specs


def _pick_app(apps: list, app: str, config_path: str | Path) -> dict:
    if re.fullmatch(r"-?\d+", str(app)):
        index = int(app)
        if not -len(apps) <= index < len(apps):
            raise WeightsError(f"--app {app}: {str(config_path)!r} has {len(apps)} application(s)")
        chosen = apps[index]
    else:
        named = [a for a in apps if isinstance(a, dict) and a.get("name") == app]
        if not named:
            names = [a.get("name") for a in apps if isinstance(a, dict)]
            raise WeightsError(f"--app {app!r}: no such application in {str(config_path)!r} (names: {names})")
        chosen = named[0]
    if not isinstance(chosen, dict):
        raise WeightsError(f"application {app} in {str(config_path)!r} is not a mapping")
    return chosen


# ---------------------------------------------------------------- cache location


def hf_home() -> Path:
    raw = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(raw)))


def hub_cache_dir(override: str | None = None) -> Path:
    """Read at call time (huggingface_hub freezes its constants at import)."""
    raw = override or os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if raw:
        return Path(os.path.expandvars(os.path.expanduser(raw)))
    return hf_home() / "hub"


def offline_env() -> str | None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return name
    return None


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


# ---------------------------------------------------------------- which files an engine needs


def _weight_info(name: str) -> tuple[str | None, str] | None:
    """(variant, format) of a weight or weight-index file name, else None."""
    m = _WEIGHT_RE.match(name) or _INDEX_RE.match(name)
    return (m.group("variant"), m.group("fmt")) if m else None


def _pick_weights(names: list[str], variant: str | None) -> set[str]:
    """Among one directory's weight files, the set the engine loads (others are duplicates).

    With a variant: its files if there are any (else the plain ones, diffusers' fallback). Without:
    the plain files if there are any. Then safetensors over .bin when both exist.
    """
    infos = {n: _weight_info(n) for n in names}
    weights = [n for n, info in infos.items() if info is not None]
    if variant and any(infos[n][0] == variant for n in weights):
        kept = [n for n in weights if infos[n][0] == variant]
    elif any(infos[n][0] is None for n in weights):
        kept = [n for n in weights if infos[n][0] is None]
    else:
        kept = weights
    if any(infos[n][1] == "safetensors" for n in kept):
        kept = [n for n in kept if infos[n][1] == "safetensors"]
    return set(kept)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_files(files: list[str], role: str, variant: str | None = None, skip: tuple[str, ...] = ()) -> list[str]:
    """The repo files `download` fetches for an engine of `role` (hub paths, '/'-separated); `skip`:
    pipeline component folders the engine loads from another repo."""
    by_dir: dict[str, list[str]] = {}
    candidates = []
    for path in files:
        parent, _, name = path.rpartition("/")
        if role == "llm":
            keep = not parent and _matches(name, LLM_FILES)
        elif role == "cover":
            # model_index.json at the root, one level of component folders; no root single-file
            # checkpoints (sd_xl_turbo_1.0*.safetensors), no ONNX exports.
            keep = (not parent and name == "model_index.json") or (
                parent.count("/") == 0 and bool(parent) and parent not in skip
                and _matches(name, PIPELINE_COMPONENT_FILES)
            )
        elif role == "cover_vae":
            # A diffusers model at the root: config.json and diffusion_pytorch_model* weights, not the
            # single-file copies for other tools (sdxl_vae.safetensors, sdxl.vae.safetensors).
            keep = not parent and (name == "config.json" or name.startswith(DIFFUSERS_WEIGHTS_STEM + "."))
        else:  # music: everything except audio samples (and the weight duplicates below)
            keep = not _matches(name.lower(), AUDIO_SAMPLES)
        if keep:
            candidates.append(path)
            by_dir.setdefault(parent, []).append(name)
    chosen = {parent: _pick_weights(names, variant) for parent, names in by_dir.items()}
    out = []
    for path in candidates:
        parent, _, name = path.rpartition("/")
        if _weight_info(name) is not None and name not in chosen[parent]:
            continue
        out.append(path)
    return sorted(out)


# ---------------------------------------------------------------- verification


@dataclass
class Result:
    spec: ModelSpec
    status: str  # ok | missing | incomplete
    path: Path | None
    size: int = 0
    problems: list[str] = field(default_factory=list)


def _names(d: Path) -> list[str]:
    # is_file() follows symlinks: a dangling snapshot link (interrupted download) counts as absent.
    return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def _check_weights(d: Path, variant: str | None, label: str, stem: str | None = None) -> list[str]:
    names = _names(d)
    if stem:  # only files of this stem are loadable (a diffusers model's folder)
        names = [n for n in names if n.startswith(stem + ".") or n.startswith(stem + "-")]
    if variant:
        usable = _pick_weights(names, variant)
    else:  # the engine asks for no variant: variant files do not count
        usable = {n for n in _pick_weights(names, None) if _weight_info(n)[0] is None}
    indexes = sorted(n for n in usable if _INDEX_RE.match(n))
    if indexes:
        problems = []
        for index in indexes:
            try:
                weight_map = json.loads((d / index).read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(f"{label}{index} is unreadable ({type(exc).__name__})")
                continue
            for shard in sorted(set(weight_map.values())):
                if not (d / shard).is_file():
                    problems.append(f"{label}{shard} (listed in {index}) is missing")
        return problems
    if any(_WEIGHT_RE.match(n) for n in usable):
        return []
    want = f" ({variant} variant)" if variant else ""
    return [f"{label}: no weights{want} (*.safetensors)"]


def _check_tokenizer(d: Path, label: str) -> list[str]:
    names = set(_names(d))
    if names & set(TOKENIZER_FILES):
        return []
    return [f"{label}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...)"]


def check_model_dir(root: Path, variant: str | None = None, skip: tuple[str, ...] = ()) -> list[str]:
    """Structural completeness of a model folder (a hub snapshot or a local directory); `skip`: pipeline
    components the engine loads from elsewhere."""
    if (root / "model_index.json").is_file():  # a diffusers pipeline
        try:
            index = json.loads((root / "model_index.json").read_text())
        except (OSError, ValueError) as exc:
            return [f"model_index.json is unreadable ({type(exc).__name__})"]
        problems = []
        for name, value in sorted(index.items()):
            if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or None in value:
                continue  # metadata, or an optional component the pipeline does not use
            if name in skip:
                continue  # passed to from_pretrained ready-made: diffusers never reads this folder
            comp = root / name
            if not comp.is_dir():
                problems.append(f"component {name}/ ({value[1]}) is missing")
            elif (comp / "config.json").is_file():
                problems += _check_weights(comp, variant, f"{name}/")
            elif (comp / "scheduler_config.json").is_file() or (comp / "preprocessor_config.json").is_file():
                pass
            elif "Tokenizer" in str(value[1]) or (comp / "tokenizer_config.json").is_file():
                problems += _check_tokenizer(comp, f"{name}/")
            else:
                problems.append(f"component {name}/ has no config")
        return problems
    if (root / "config.json").is_file():
        try:
            config = json.loads((root / "config.json").read_text())
        except (OSError, ValueError) as exc:
            return [f"config.json is unreadable ({type(exc).__name__})"]
        if isinstance(config, dict) and "_class_name" in config:  # a diffusers model (the cover VAE)
            return _check_weights(root, variant, "", stem=DIFFUSERS_WEIGHTS_STEM)
        return _check_weights(root, variant, "") + _check_tokenizer(root, "")  # a transformers model (the LLM)
    return ["no model_index.json or config.json"]


def _tree_problems(cache: Path, spec: ModelSpec, snapshot: Path) -> list[str]:
    """Expected files and sizes from the listing huggingface_hub cached at download time, if any."""
    try:
        from huggingface_hub import get_cached_repo_tree  # huggingface_hub >= 1.x with the tree cache
    except ImportError:
        return []
    try:
        tree = get_cached_repo_tree(spec.model, revision=REVISION, cache_dir=str(cache))
    except Exception:  # no listing cached (the cache was filled some other way): structure only
        return []
    sizes = {f.path: f.size for f in tree}
    problems = []
    for path in select_files(list(sizes), spec.role, spec.variant, spec.skip):
        local = snapshot / path
        if not local.is_file():
            problems.append(f"{path} is missing")
        elif sizes[path] is not None and local.stat().st_size != sizes[path]:
            problems.append(f"{path} is truncated ({local.stat().st_size} of {sizes[path]} bytes)")
    return problems


def _dir_size(root: Path) -> int:
    total = 0
    for p in root.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def verify_one(spec: ModelSpec, cache: Path) -> Result:
    if spec.local:
        root = spec.local_path
        if not root.is_dir():
            return Result(spec, "missing", root, problems=["directory does not exist"])
        problems = check_model_dir(root, spec.variant, spec.skip)
        return Result(spec, "incomplete" if problems else "ok", root, _dir_size(root), problems)
    repo = repo_folder(cache, spec.model)
    ref = repo / "refs" / REVISION
    if not ref.is_file():
        return Result(spec, "missing", repo, problems=[f"not in the cache (no {repo.name}/refs/{REVISION})"])
    snapshot = repo / "snapshots" / ref.read_text().strip()
    if not snapshot.is_dir():
        return Result(spec, "missing", snapshot, problems=[f"refs/{REVISION} points to a missing snapshot"])
    problems = _tree_problems(cache, spec, snapshot)
    problems += [p for p in check_model_dir(snapshot, spec.variant, spec.skip) if p not in problems]
    return Result(spec, "incomplete" if problems else "ok", snapshot, _dir_size(snapshot), problems)


# ---------------------------------------------------------------- reporting


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def print_table(results: list[Result], out=None) -> None:
    out = out or sys.stdout
    rows = [("ROLE", "MODEL", "STATUS", "SIZE", "PATH")]
    for r in results:
        status = ("local " if r.spec.local else "") + r.status
        size = human_size(r.size) if r.status != "missing" else "-"
        rows.append((r.spec.role, r.spec.model, status, size, str(r.path) if r.path else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4], file=out)


def _command(name: str, config: str, app: str) -> str:
    app_flag = "" if app == "0" else f" --app {app}"
    return f"python -m deployments.weights {name} --config {config}{app_flag}"


def explain(r: Result, cache: Path, config: str, app: str) -> str:
    details = "; ".join(r.problems[:5]) + (f"; ... ({len(r.problems) - 5} more)" if len(r.problems) > 5 else "")
    if r.spec.local:
        return (
            f"model {r.spec.model!r} ({r.spec.role}) is a local directory that is {r.status} at {r.path} "
            f"({details}): run `make setup` to build the local kits, or fix {r.spec.field} in {config}"
        )
    fix = (
        f"run `{_command('download', config, app)}` on a machine with network access, "
        f"or mount the cache volume (HF_HOME={hf_home()})"
    )
    if r.status == "missing":
        return f"model {r.spec.model} ({r.spec.role}) is not in the HF cache at {cache}: {fix}"
    return f"model {r.spec.model} ({r.spec.role}) is incomplete in the HF cache at {cache} ({details}): {fix}"


def report(results: list[Result], cache: Path, config: str, app: str) -> int:
    print(f"HF cache: {cache}")
    print_table(results)
    sys.stdout.flush()
    bad = [r for r in results if r.status != "ok"]
    for r in bad:
        print(f"error: {explain(r, cache, config, app)}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} of {len(results)} model(s) not ready.", file=sys.stderr)
        return EXIT_MISSING
    print(f"all {len(results)} model(s) present.")
    return EXIT_OK


# ---------------------------------------------------------------- commands


def cmd_verify(specs: list[ModelSpec], cache: Path, config: str, app: str) -> int:
    return report([verify_one(s, cache) for s in specs], cache, config, app)


def _literal(path: str) -> str:
    """An fnmatch pattern that matches exactly `path`."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def download_one(spec: ModelSpec, cache: Path, max_workers: int) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi().list_repo_files(spec.model, revision=REVISION)
    wanted = select_files(files, spec.role, spec.variant, spec.skip)
    if not wanted:
        raise WeightsError(f"{spec.model}: none of the repo's {len(files)} files is a {spec.role} model file")
    path = snapshot_download(
        spec.model,
        revision=REVISION,
        cache_dir=str(cache),
        allow_patterns=[_literal(f) for f in wanted],
        max_workers=max_workers,
    )
    return Path(path)


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def probe_hub(endpoint: str, timeout: float = 10.0) -> str | None:
    """None if a TCP connection to the hub opens, else why not: fail in seconds, not after retries.

    Skipped behind an HTTP(S) proxy, where only the proxy can tell.
    """
    proxies = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(v) for v in proxies):
        return None
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return f"HF_ENDPOINT={endpoint!r} is not a URL"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _download_error(spec: ModelSpec, exc: Exception) -> str:
    try:
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - very old huggingface_hub
        GatedRepoError = RepositoryNotFoundError = ()  # type: ignore[assignment]
    endpoint = hub_endpoint()
    if isinstance(exc, GatedRepoError):
        return (
            f"{spec.model} is gated: accept its license at {endpoint}/{spec.model} and put an HF_TOKEN "
            "with access in the environment"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return f"{spec.model} was not found on {endpoint} (a typo, or a private repo: set HF_TOKEN)"
    if isinstance(exc, WeightsError):
        return str(exc)
    return (
        f"downloading {spec.model} from {endpoint} failed ({type(exc).__name__}: {str(exc)[:300]}); "
        "check network access to the hub and retry (completed files are kept)"
    )


def cmd_download(specs: list[ModelSpec], cache: Path, config: str, app: str, max_workers: int) -> int:
    hub = [s for s in specs if not s.local]
    for s in specs:
        if s.local:
            print(f"{s.role}: {s.model} is a local directory: nothing to download")
    if hub:
        offline = offline_env()
        if offline:
            print(
                f"error: {offline}={os.environ[offline]} is set, so downloads are disabled; nothing was "
                f"fetched for {', '.join(s.model for s in hub)}. Run without it on a machine with network "
                f"access: `{offline}=0 {_command('download', config, app)}`",
                file=sys.stderr,
            )
            return EXIT_ERROR
        endpoint = hub_endpoint()
        unreachable = probe_hub(endpoint)
        if unreachable:
            print(
                f"error: cannot reach the Hugging Face hub at {endpoint} ({unreachable}); nothing was fetched. "
                "Run the download on a machine with network access (or fix HF_ENDPOINT / the proxy settings), "
                "or mount a cache volume that already holds the weights",
                file=sys.stderr,
            )
            return EXIT_ERROR
        cache.mkdir(parents=True, exist_ok=True)
        failed = False
        for s in hub:
            what = f"{s.model} ({s.variant} weights)" if s.variant else s.model
            print(f"{s.role}: downloading {what} into {cache}", flush=True)
            try:
                download_one(s, cache, max_workers)
            except Exception as exc:
                failed = True
                print(f"error: {_download_error(s, exc)}", file=sys.stderr, flush=True)
        if failed:
            cmd_verify(specs, cache, config, app)
            return EXIT_ERROR
    return cmd_verify(specs, cache, config, app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.weights",
        description="Download or verify the model weights a Serve config names (HF cache: $HF_HOME/hub).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("download", "fetch the weights into the HF cache (needs network access), then verify"),
        ("verify", "check offline that every model is fully in the cache; exit 1 if not"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default="configs/prod.yaml", help="Serve config (default: configs/prod.yaml)")
        p.add_argument("--app", default="0", help="application index or name in the config (default: 0)")
        p.add_argument("--cache-dir", default=None, help="hub cache (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
        if name == "download":
            p.add_argument("--max-workers", type=int, default=8, help="parallel file downloads (default: 8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        specs = load_specs(args.config, args.app)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    cache = hub_cache_dir(args.cache_dir)
    if args.command == "verify":
        return cmd_verify(specs, cache, args.config, args.app)
    return cmd_download(specs, cache, args.config, args.app, args.max_workers)


if __name__ == "__main__":
    raise SystemExit(main())
