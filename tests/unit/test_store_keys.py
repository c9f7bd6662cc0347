"""Key, job id and upload name rules (store/keys.py), and how their refusals map to gRPC statuses."""

from __future__ import annotations

import grpc
import pytest

from inspatio_world.jobs.manager import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, JobManager
from inspatio_world.rpc.errors import ErrorMap
from inspatio_world.store.base import InvalidKey, ObjectNotFound, StoreError, clean_metadata
from inspatio_world.store.keys import (MAX_NAME_CHARS, MAX_PART_BYTES, is_manifest_key, job_prefix, manifest_key,
                                       tenant_root, upload_filename, upload_key, validate_bucket, validate_job_id,
                                       validate_key)
from inspatio_world.store.local import LocalStore

DIGEST = "0" * 64


@pytest.mark.parametrize("name, stored", [
    ("clip.mp4", "clip.mp4"), ("/home/me/clip.mp4", "clip.mp4"), ("C:\\Videos\\clip.mp4", "clip.mp4"),
    ("../../etc/clip.mp4", "clip.mp4"), ("ü" * 126 + ".mp", "ü" * 126 + ".mp"), (".hidden.mp4", ".hidden.mp4"),
])  # fmt: skip
def test_an_upload_name_is_reduced_to_its_file_name(name, stored):
    assert upload_filename(name) == stored
    assert upload_key(DIGEST, name) == f"uploads/{DIGEST}/{stored}"


@pytest.mark.parametrize("name", ["", ".", "..", "a/..", "/", "dir/", "dir\\", "a\x00b.mp4", "a\nb.mp4", "tab\t",
                                  "x" * (MAX_PART_BYTES + 1), "ü" * 128, ".inspatio-tmp-x"])  # fmt: skip
def test_an_upload_name_that_cannot_be_made_safe_is_refused_naming_the_field(name):
    with pytest.raises(InvalidKey, match="upload_name"):
        upload_filename(name)


@pytest.mark.parametrize("job_id", ["", ".", "..", "/abs", "a/b", "a\x00b", "ü", "x" * (MAX_NAME_CHARS + 1),
                                    "abc\n", "-leading", 7])  # fmt: skip
def test_bad_job_ids_are_refused_before_any_key_is_made(job_id):
    with pytest.raises(InvalidKey, match="job id"):
        validate_job_id(job_id)
    with pytest.raises(InvalidKey):
        manifest_key(job_id)


def test_a_tenants_uploads_and_jobs_live_under_its_root_and_open_mode_keeps_the_old_layout():
    assert tenant_root(None) == ""
    assert upload_key(DIGEST, "clip.mp4", "acme") == f"tenants/acme/uploads/{DIGEST}/clip.mp4"
    assert job_prefix("j1", "acme") == "tenants/acme/jobs/j1/"
    assert manifest_key("j1", "acme") == "tenants/acme/jobs/j1/manifest.json"
    assert (manifest_key("j1"), upload_key(DIGEST, "clip.mp4")) == ("jobs/j1/manifest.json", f"uploads/{DIGEST}/clip.mp4")


@pytest.mark.parametrize("tenant", ["", "..", "a/b", "ü", "-x", "x" * (MAX_NAME_CHARS + 1)])
def test_a_tenant_name_must_be_one_plain_part(tenant):
    with pytest.raises(InvalidKey, match="tenant name"):
        manifest_key("j1", tenant)


def test_manifest_keys_of_every_tenant_are_recognised_and_nothing_else():
    assert all(map(is_manifest_key, ["jobs/j1/manifest.json", "tenants/acme/jobs/j1/manifest.json"]))
    assert not any(map(is_manifest_key, ["jobs/j1/lease.json", "tenants/acme/uploads/x/manifest.json",
                                         "tenants/acme/jobs/j1/x/manifest.json", "cache/jobs/j1/manifest.json"]))


def test_good_job_ids():
    for job_id in ["0123abcd", "no-such-job", "a.b_c", "x" * MAX_NAME_CHARS]:
        assert validate_job_id(job_id) == job_id


def test_keys_with_a_part_too_long_for_a_file_system_are_refused():
    assert validate_key("a/" + "x" * MAX_PART_BYTES)
    with pytest.raises(InvalidKey, match="longer than 255 bytes"):
        validate_key("a/" + "x" * (MAX_PART_BYTES + 1))


def test_a_long_value_is_cut_in_the_message():
    with pytest.raises(InvalidKey) as caught:
        validate_key("x" * 5000)
    assert len(str(caught.value)) < 200 and "5000 characters" in str(caught.value)


def test_a_trailing_newline_never_slips_through_a_pattern():
    for check in (lambda: validate_bucket("bucket\n"), lambda: upload_key(DIGEST + "\n", "a.mp4"),
                  lambda: clean_metadata({"name": "value\n"}), lambda: clean_metadata({"name\n": "v"})):
        with pytest.raises(InvalidKey):
            check()


def test_store_refusals_map_to_statuses_a_client_can_act_on():
    errors = ErrorMap()
    assert issubclass(InvalidKey, ValueError) and issubclass(InvalidKey, StoreError)
    assert errors.status_for(InvalidKey("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert errors.status_for(ObjectNotFound("gone"))[0] == grpc.StatusCode.NOT_FOUND
    assert errors.status_for(StoreError("store down"))[0] == grpc.StatusCode.UNAVAILABLE
    # most specific wins even in a map without InvalidKey's own rule: it is a ValueError first
    plain = ErrorMap([(ValueError, grpc.StatusCode.INVALID_ARGUMENT), (StoreError, grpc.StatusCode.UNAVAILABLE)])
    assert plain.status_for(InvalidKey("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT


class NoStages:
    model_versions = ("v1",)  # what it serves is known without calling a stage

    def __getattr__(self, name):
        raise AssertionError(f"stage {name!r} called")


def test_list_limits(tmp_path):
    manager = JobManager(LocalStore(tmp_path), NoStages(), max_parallel_jobs=1)
    try:
        for limit in (-1, -1000):
            with pytest.raises(ValueError, match="limit"):
                manager.list(limit)
        assert manager.list(0) == [] and manager.list(2**31 - 1) == []
        assert (DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT) == (100, 1000)
    finally:
        manager.shutdown()


def test_a_bad_upload_name_is_refused_before_a_chunk_is_read(tmp_path):
    manager = JobManager(LocalStore(tmp_path / "store"), NoStages(), max_parallel_jobs=1)

    def chunks():
        raise AssertionError("a chunk was read")
        yield b""

    try:
        with pytest.raises(InvalidKey, match="upload_name"):
            manager.upload_video(chunks(), "..")
        assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*"))
    finally:
        manager.shutdown()
