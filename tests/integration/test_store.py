"""The object store contract, run against LocalStore and against S3Store on a real SeaweedFS server;
then what only S3 has (credentials, retries, multipart, bucket races), content keys and store URLs."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import socket
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

from inspatio_world.store import (CredentialsRejected, InvalidKey, LocalStore, ObjectNotFound, ObjectStore, S3Store,
                                  StoreError, content_key, job_prefix, manifest_key, open_store, upload_key)
from tests.support.seaweedfs import SeaweedFS

MIB = 1 << 20
PART_SIZE = 5 * MIB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store", bucket="test")
    server: SeaweedFS = request.getfixturevalue("seaweedfs")  # started only when an S3 case runs
    return server.make_store(new_bucket(), part_size=PART_SIZE, retries=1, backoff_s=0.05)


def leftovers(store: ObjectStore) -> list[str]:
    """Everything a failed put could have left: every file under a local root, every S3 object."""
    if isinstance(store, LocalStore):
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if not p.is_dir())
    return [info.key for info in store.list()]


@pytest.fixture
def corrupt(store: ObjectStore, request: pytest.FixtureRequest) -> Callable[[str, bytes], None]:
    """Replaces an object's bytes behind the store's back, keeping its recorded sha256."""
    def replace_bytes(key: str, data: bytes) -> None:
        if isinstance(store, LocalStore):
            (store.root / store.bucket / key).resolve().write_bytes(data)
            return
        recorded = store.stat(key).sha256
        request.getfixturevalue("seaweedfs").client().put_object(
            store.bucket, key, io.BytesIO(data), len(data), metadata={"sha256": recorded})
    return replace_bytes


# -- the contract, on every backend -----------------------------------------------------------------

def test_put_bytes_round_trip_records_sha256(store: ObjectStore) -> None:
    data = b"hello, object store"
    info = store.put_bytes("a/hello.txt", data, content_type="text/plain", metadata={"Model": "wan-1.3b"})
    assert (info.key, info.size, info.sha256) == ("a/hello.txt", len(data), sha256(data))
    assert store.get_bytes("a/hello.txt") == data
    stat = store.stat("a/hello.txt")
    assert (stat.size, stat.sha256, stat.content_type) == (len(data), sha256(data), "text/plain")
    assert dict(stat.metadata) == {"model": "wan-1.3b"}
    assert store.exists("a/hello.txt")


def test_put_file_larger_than_a_part(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(12 * MIB)  # 3 parts of 5 MiB on S3
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    info = store.put_file("big/file.bin", source, metadata={"origin": "test"})
    assert (info.size, info.sha256) == (len(data), sha256(data))
    if isinstance(store, S3Store):
        assert info.etag.endswith(f"-{math.ceil(len(data) / PART_SIZE)}")  # a multipart upload's etag
    target = store.download("big/file.bin", tmp_path / "out" / "copy.bin")
    assert target.read_bytes() == data
    assert store.stat("big/file.bin").metadata == {"origin": "test"}


def test_put_stream_of_unknown_length(store: ObjectStore) -> None:
    chunks = [os.urandom(n) for n in (1, 3 * MIB, 0, 4 * MIB + 7, 1000)]  # > one part on S3
    data = b"".join(chunks)
    info = store.put_stream("streams/upload.bin", iter(chunks), content_type="video/mp4")
    assert (info.size, info.sha256) == (len(data), sha256(data))
    assert store.get_bytes("streams/upload.bin") == data
    assert store.stat("streams/upload.bin").content_type == "video/mp4"


def test_empty_object(store: ObjectStore) -> None:
    info = store.put_bytes("empty", b"")
    assert (info.size, info.sha256) == (0, sha256(b""))
    assert store.get_bytes("empty") == b""


def test_stat_exists_delete_and_list_by_prefix(store: ObjectStore) -> None:
    for key in ["a/1", "a/2", "a/b/3", "ab", "b/4"]:
        store.put_bytes(key, key.encode())
    assert [i.key for i in store.list("a/")] == ["a/1", "a/2", "a/b/3"]
    assert [i.key for i in store.list("a")] == ["a/1", "a/2", "a/b/3", "ab"]  # a string prefix, as on S3
    assert [i.key for i in store.list("a/b")] == ["a/b/3"]
    assert [(i.key, i.size) for i in store.list()] == [("a/1", 3), ("a/2", 3), ("a/b/3", 5), ("ab", 2), ("b/4", 3)]
    assert list(store.list("nothing/")) == []

    store.delete("a/2")
    assert not store.exists("a/2") and store.stat("a/2") is None
    store.delete("a/2")  # deleting what is not there is fine
    store.delete("a/b/3")
    assert [i.key for i in store.list()] == ["a/1", "ab", "b/4"]


def test_missing_keys(store: ObjectStore, tmp_path: Path) -> None:
    assert store.stat("no/such/key") is None
    assert not store.exists("no/such/key")
    assert list(store.list("no/")) == []
    with pytest.raises(ObjectNotFound) as raised:
        store.get_bytes("no/such/key")
    assert "no/such/key" in str(raised.value) and store.bucket in str(raised.value)
    assert isinstance(raised.value, KeyError)
    with pytest.raises(ObjectNotFound):
        store.download("no/such/key", tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_interrupted_stream_leaves_nothing(store: ObjectStore) -> None:
    store.put_bytes("keep/old.bin", b"old content")
    before = leftovers(store)

    def failing_upload() -> Iterator[bytes]:
        yield os.urandom(MIB)
        yield os.urandom(6 * MIB)
        raise ConnectionResetError("client went away")

    for key in ["keep/old.bin", "keep/new.bin"]:
        with pytest.raises(ConnectionResetError):
            store.put_stream(key, failing_upload())
    assert leftovers(store) == before
    assert store.get_bytes("keep/old.bin") == b"old content"
    assert store.stat("keep/new.bin") is None


def test_readers_never_see_a_mix_of_two_puts(store: ObjectStore) -> None:
    versions = {name: (name * 200_000).encode() for name in "ab"}
    store.put_bytes("hot/key", versions["a"], metadata={"version": "a"})
    stop = threading.Event()

    def overwrite() -> None:
        while not stop.is_set():
            for name, data in versions.items():
                store.put_bytes("hot/key", data, metadata={"version": name})

    writer = threading.Thread(target=overwrite)
    writer.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert store.get_bytes("hot/key") in versions.values()  # get_bytes also checks the sha256
            info = store.stat("hot/key")
            assert info.sha256 == sha256(versions[info.metadata["version"]])
    finally:
        stop.set()
        writer.join()
    if isinstance(store, LocalStore):  # replaced versions are cleaned up
        assert len(list((store.root / ".versions" / store.bucket).iterdir())) == 2


def test_download_replaces_the_target_atomically_and_checks_the_digest(
        store: ObjectStore, corrupt: Callable[[str, bytes], None], tmp_path: Path) -> None:
    target = tmp_path / "video.mp4"
    target.write_bytes(b"previous file")
    store.put_bytes("v.mp4", b"good bytes")
    corrupt("v.mp4", b"evil bytes")
    with pytest.raises(StoreError, match="corrupt"):
        store.download("v.mp4", target)
    with pytest.raises(StoreError, match="corrupt"):
        store.get_bytes("v.mp4")
    assert target.read_bytes() == b"previous file"
    assert [p.name for p in tmp_path.iterdir() if p.name != "store"] == ["video.mp4"]  # no temp file left


def test_presigned_get_is_readable_without_credentials(store: ObjectStore) -> None:
    store.put_bytes("shared/clip.bin", b"for the browser")
    with urllib.request.urlopen(store.presigned_get("shared/clip.bin", expires_s=60)) as response:
        assert response.read() == b"for the browser"


def test_presigned_put(store: ObjectStore) -> None:
    if isinstance(store, LocalStore):
        with pytest.raises(StoreError, match="put_file"):
            store.presigned_put("incoming/x.bin")
        return
    url = store.presigned_put("incoming/x.bin", expires_s=60)
    request = urllib.request.Request(url, data=b"uploaded by a client", method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(request).close()
    assert store.get_bytes("incoming/x.bin") == b"uploaded by a client"
    assert store.stat("incoming/x.bin").sha256 is None  # nobody recorded a digest


def test_url_for(store: ObjectStore) -> None:
    url = store.url_for("jobs/j1/manifest.json")
    if isinstance(store, LocalStore):
        assert url == (store.root / "test" / "jobs/j1/manifest.json").as_uri()
    else:
        assert url == f"s3://{store.bucket}/jobs/j1/manifest.json"


BAD_KEYS = ["", "/abs/key", "a//b", "a/../b", "..", "./a", "a/.", "trailing/", "back\\slash", "nul\x00byte",
            "line\nbreak", ".inspatio-tmp-x", "a/.inspatio-y/b", "x" * 1025]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_keys_are_rejected_everywhere(store: ObjectStore, key: str, tmp_path: Path) -> None:
    operations = [lambda: store.put_bytes(key, b"x"), lambda: store.put_stream(key, [b"x"]),
                  lambda: store.get_bytes(key), lambda: store.stat(key), lambda: store.delete(key),
                  lambda: store.download(key, tmp_path / "x"), lambda: store.presigned_get(key),
                  lambda: store.url_for(key)]
    for operation in operations:
        with pytest.raises(InvalidKey):
            operation()
    assert leftovers(store) == []


def test_bad_metadata_and_prefixes_are_rejected(store: ObjectStore) -> None:
    for metadata in [{"sha256": "forged"}, {"under_score": "x"}, {"name": "line\nbreak"}, {"name": "naïve"},
                     {"big": "x" * 3000}]:
        with pytest.raises(InvalidKey):
            store.put_bytes("k", b"x", metadata=metadata)
    with pytest.raises(InvalidKey):
        list(store.list("../"))
    assert leftovers(store) == []


# -- local store specifics ----------------------------------------------------------------------------

def test_local_objects_are_plain_files_under_their_keys(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, bucket="inspatio")
    store.put_bytes("jobs/j1/manifest.json", b"{}")
    assert (tmp_path / "inspatio" / "jobs" / "j1" / "manifest.json").read_bytes() == b"{}"
    store.delete("jobs/j1/manifest.json")
    assert list((tmp_path / "inspatio").iterdir()) == []  # emptied folders go too


def test_local_store_cannot_hold_a_key_and_keys_below_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a", b"1")
    with pytest.raises(StoreError, match="cannot hold both"):
        store.put_bytes("a/b", b"2")
    store.put_bytes("c/d", b"3")
    with pytest.raises(StoreError, match="cannot hold both"):
        store.put_bytes("c", b"4")
    assert [i.key for i in store.list()] == ["a", "c/d"]
    assert len(list((tmp_path / ".versions" / "inspatio").iterdir())) == 4  # data + info of each object


# -- S3 specifics ---------------------------------------------------------------------------------------

def test_wrong_credentials_are_named_and_not_retried(seaweedfs: SeaweedFS, caplog: pytest.LogCaptureFixture) -> None:
    store = S3Store(seaweedfs.endpoint, seaweedfs.access_key, "not-the-secret", new_bucket(), retries=3,
                    backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="inspatio_world.store.s3"):
        with pytest.raises(CredentialsRejected, match="credentials"):
            store.put_bytes("k", b"x")
        with pytest.raises(CredentialsRejected, match="credentials"):
            store.stat("k")  # not "missing": the server would not say
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


def test_an_unreachable_server_is_retried_then_reported(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Store(f"127.0.0.1:{port}", "key", "secret", "some-bucket", retries=3, backoff_s=0.01)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="inspatio_world.store.s3"):
        with pytest.raises(StoreError, match="after 4 attempts"):
            store.get_bytes("k")
    assert time.monotonic() - started < 2
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 3


def test_a_server_that_comes_back_within_the_retry_time_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    """No retry count: a store down for longer than a few backoffs (a restart) is retried in place for
    up to retry_s; each retry is logged once, without the secret."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = type("Handler", (ScriptedS3,), {"script": [], "requests": 0})
    servers = []

    def come_back() -> None:  # the "restarted" server, on the same port, 1.5 s later
        time.sleep(1.5)
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), handler))
        servers[0].serve_forever(poll_interval=0.05)

    threading.Thread(target=come_back, daemon=True).start()
    store = S3Store(f"127.0.0.1:{port}", "key", "the-secret-key", "bucket", region="us-east-1", backoff_s=0.05, retry_s=20)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="inspatio_world.store.s3"):
            assert store.stat("k").sha256 == sha256(b"hello")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert 1.4 < time.monotonic() - started < 15
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 4 and not any("the-secret-key" in message for message in retries)
    assert handler.requests == 1


def test_retries_stop_once_the_retry_time_is_spent() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Store(f"127.0.0.1:{port}", "key", "secret", "some-bucket", backoff_s=0.05, retry_s=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"failed after \d+ attempts in 1 s"):
        store.get_bytes("k")
    assert 1.0 <= time.monotonic() - started < 2.0


def test_open_store_reads_the_retry_time_from_the_environment() -> None:
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    assert open_store("s3://bucket?endpoint=127.0.0.1:1", env=env).retry_s == 60
    assert open_store("s3://bucket?endpoint=127.0.0.1:1", env={**env, "INSPATIO_STORE_RETRY_SECONDS": "5"}).retry_s == 5
    with pytest.raises(StoreError, match="INSPATIO_STORE_RETRY_SECONDS"):
        open_store("s3://bucket?endpoint=127.0.0.1:1", env={**env, "INSPATIO_STORE_RETRY_SECONDS": "soon"})


class ScriptedS3(BaseHTTPRequestHandler):
    """Answers HEAD requests with the next status of `script`, then with an object's headers."""

    script: list[int] = []
    requests = 0

    def do_HEAD(self) -> None:
        type(self).requests += 1
        status = self.script.pop(0) if self.script else 200
        self.send_response(status)
        if status == 200:
            for name, value in [("Content-Length", "5"), ("ETag", '"abc"'), ("Content-Type", "text/plain"),
                                ("Last-Modified", "Wed, 25 Nov 2026 10:00:00 GMT"),
                                ("X-Amz-Meta-Sha256", sha256(b"hello"))]:
                self.send_header(name, value)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted_s3() -> Iterator[tuple[type[ScriptedS3], str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (ScriptedS3,), {"script": [], "requests": 0}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.RequestHandlerClass, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("script, requests", [([503, 500], 3), ([503, 503, 503, 503], 4)])
def test_server_errors_are_retried(scripted_s3: tuple[type[ScriptedS3], str], script: list[int], requests: int) -> None:
    handler, endpoint = scripted_s3
    handler.script = list(script)
    store = S3Store(endpoint, "key", "secret", "bucket", region="us-east-1", retries=3, backoff_s=0.01)
    if len(script) > 3:
        with pytest.raises(StoreError, match="after 4 attempts"):
            store.stat("k")
    else:
        assert store.stat("k").sha256 == sha256(b"hello")
    assert handler.requests == requests


@pytest.mark.parametrize("status, outcome", [(403, CredentialsRejected), (404, None)])
def test_client_errors_are_not_retried(scripted_s3: tuple[type[ScriptedS3], str], status: int,
                                      outcome: type[Exception] | None) -> None:
    handler, endpoint = scripted_s3
    handler.script = [status]
    store = S3Store(endpoint, "key", "secret", "bucket", region="us-east-1", retries=3, backoff_s=0.01)
    if outcome is None:
        assert store.stat("k") is None
    else:
        with pytest.raises(outcome):
            store.stat("k")
    assert handler.requests == 1


def test_many_stores_create_one_bucket_at_once(seaweedfs: SeaweedFS) -> None:
    bucket = new_bucket()
    stores = [seaweedfs.make_store(bucket) for _ in range(6)]
    with ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(lambda i: stores[i].put_bytes(f"k{i}", b"x"), range(len(stores))))
    assert [i.key for i in stores[0].list()] == [f"k{i}" for i in range(len(stores))]


def test_metadata_names_come_back_lower_case(seaweedfs: SeaweedFS) -> None:
    store = seaweedfs.make_store(new_bucket())
    store.put_bytes("k", b"x")
    seaweedfs.client().put_object(store.bucket, "foreign", io.BytesIO(b"y"), 1, metadata={"Camera-Path": "orbit"})
    info = store.stat("foreign")
    assert (info.sha256, dict(info.metadata)) == (None, {"camera-path": "orbit"})


# -- keys -------------------------------------------------------------------------------------------------

VIDEO = "ab" * 32


def test_content_key_follows_the_documented_recipe() -> None:
    key = content_key("depth", {"video": VIDEO}, {"frames": 81, "fps": 16.0}, "da3-giant@1", "depth.safetensors")
    text = '{"inputs":{"video":"' + VIDEO + '"},"options":{"fps":16.0,"frames":81},"weights":"da3-giant@1"}'
    assert key == f"cache/depth/{sha256(text.encode())}/depth.safetensors"


def test_content_key_is_stable_and_sensitive_to_every_ingredient() -> None:
    base = dict(stage="render", inputs={"video": VIDEO, "depth": "cache/depth/x/depth.safetensors"},
                options={"trajectory": "orbit", "size": [480, 832], "nested": {"b": 1, "a": 2}},
                weights="renderer-v1", name="render.mkv")
    key = content_key(**base)
    reordered = dict(base, inputs=dict(reversed(list(base["inputs"].items()))),
                     options={"nested": {"a": 2, "b": 1}, "size": (480, 832), "trajectory": "orbit"})
    assert content_key(**reordered) == key
    variants = [dict(base, inputs={**base["inputs"], "video": "cd" * 32}),
                dict(base, inputs={**base["inputs"], "extra": "1"}),
                dict(base, options={**base["options"], "trajectory": "dolly"}),
                dict(base, options={**base["options"], "size": [480, 833]}),
                dict(base, options={**base["options"], "seed": 0}),
                dict(base, weights="renderer-v2"),
                dict(base, stage="generate")]
    keys = {content_key(**variant) for variant in variants}
    assert len(keys) == len(variants) and key not in keys
    # outputs of one piece of work share its folder
    assert content_key(**dict(base, name="mask.mkv")).rsplit("/", 1)[0] == key.rsplit("/", 1)[0]


@pytest.mark.parametrize("options", [{"x": math.nan}, {"x": math.inf}, {"x": Path("/tmp")}, {"x": b"bytes"}])
def test_content_key_refuses_options_without_a_stable_text_form(options: dict) -> None:
    with pytest.raises(InvalidKey):
        content_key("caption", {"video": VIDEO}, options, "w", "caption.json")


def test_content_key_refuses_bad_stage_and_names() -> None:
    for stage in ["", "a/b", "..", ".hidden"]:
        with pytest.raises(InvalidKey):
            content_key(stage, {}, {}, "w", "out")
    for name in ["", "../escape", "a//b"]:
        with pytest.raises(InvalidKey):
            content_key("caption", {}, {}, "w", name)


def test_upload_and_job_keys() -> None:
    digest = sha256(b"video")
    assert upload_key(digest, "clip.mp4") == f"uploads/{digest}/clip.mp4"
    assert upload_key(digest, "/home/me/clip.mp4") == f"uploads/{digest}/clip.mp4"
    assert upload_key(digest, "C:\\Videos\\clip.mp4") == f"uploads/{digest}/clip.mp4"
    for bad in [(digest.upper(), "a.mp4"), ("abc", "a.mp4"), (digest, ""), (digest, "dir/..")]:
        with pytest.raises(InvalidKey):
            upload_key(*bad)
    assert job_prefix("0123abcd") == "jobs/0123abcd/"
    assert manifest_key("0123abcd") == "jobs/0123abcd/manifest.json"
    for bad_id in ["", "a/b", "..", "../x"]:
        with pytest.raises(InvalidKey):
            manifest_key(bad_id)


# -- store URLs --------------------------------------------------------------------------------------------

def test_open_store_local(tmp_path: Path) -> None:
    plain = open_store(str(tmp_path))
    assert isinstance(plain, LocalStore) and (plain.root, plain.bucket) == (tmp_path.resolve(), "inspatio")
    url = open_store(f"{tmp_path.as_uri()}?bucket=other")
    assert isinstance(url, LocalStore) and (url.root, url.bucket) == (tmp_path.resolve(), "other")


def test_open_store_s3_reads_credentials_from_the_environment(seaweedfs: SeaweedFS) -> None:
    url = f"s3://{new_bucket()}?endpoint={seaweedfs.endpoint}&secure=0&part_size_mb=5"
    for env in [{"INSPATIO_S3_ACCESS_KEY": seaweedfs.access_key, "INSPATIO_S3_SECRET_KEY": seaweedfs.secret_key,
                 "AWS_ACCESS_KEY_ID": "ignored"},
                {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key}]:
        store = open_store(url, env=env)
        assert isinstance(store, S3Store) and store.part_size == 5 * MIB
        store.put_bytes("from-url", json.dumps(env).encode())
        assert json.loads(store.get_bytes("from-url")) == env


@pytest.mark.parametrize("url, env, message", [
    ("s3://bucket?endpoint=127.0.0.1:1&secure=0", {}, "INSPATIO_S3_ACCESS_KEY"),
    ("s3://bucket?endpoint=127.0.0.1:1", {"INSPATIO_S3_ACCESS_KEY": "k", "AWS_SECRET_ACCESS_KEY": "s"},
     "INSPATIO_S3_SECRET_KEY"),
    ("s3://key:secret@bucket?endpoint=127.0.0.1:1", {}, "not in the URL"),
    ("s3://bucket?endpoint=127.0.0.1:1&colour=blue", {}, "unknown option"),
    ("s3://bucket?endpoint=127.0.0.1:1&secure=yes", {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
     "secure must be"),
    ("s3://bucket/some/key?endpoint=127.0.0.1:1", {}, "bucket only"),
    ("ftp://host/path", {}, "use a path"),
    ("file://host/path", {}, "local path"),
])
def test_open_store_explains_bad_urls(url: str, env: dict, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(url, env=env)


def test_a_url_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(StoreError) as refused:
        open_store("s3://AKIAEXAMPLE:hunter2secret@bucket?endpoint=127.0.0.1:1")
    assert "hunter2secret" not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)
