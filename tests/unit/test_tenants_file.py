"""The tenants file (jobs/tenants.py): checked strictly, naming the file and field; who may read which
video_uri; `inspatio token new`."""

from __future__ import annotations

import json

import pytest

from inspatio_world.cli import main
from inspatio_world.jobs.manifest import Manifest
from inspatio_world.jobs.tenants import ANONYMOUS, Tenant, Tenants, TenantsFileError
from inspatio_world.refusals import PermissionDenied
from inspatio_world.rpc.auth import TokenVerifier, token_digest

DIGEST = "a" * 64
BUCKET = "inspatio"


def tenant(**changes) -> dict:
    return {"name": "acme", "token_sha256": [DIGEST], **changes}


def test_a_good_file_loads_with_its_limits(tmp_path, monkeypatch):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [
        tenant(input_prefixes=[f"s3://{BUCKET}/datasets/acme/"], max_concurrent_jobs=4, max_upload_bytes=1 << 30,
               max_output_frames=500, max_concurrent_sessions=2),
        {"name": "bravo", "token_sha256": ["b" * 64, "c" * 64]},
    ]}))  # fmt: skip
    monkeypatch.setenv("INSPATIO_TENANTS_FILE", str(path))
    tenants = Tenants.from_env()
    acme, bravo = tenants.tenants
    assert (acme.max_concurrent_jobs, acme.max_upload_bytes, acme.max_output_frames) == (4, 1 << 30, 500)
    assert acme.max_concurrent_sessions == 2
    assert (bravo.max_concurrent_jobs, bravo.max_concurrent_sessions, bravo.input_prefixes) == (None, None, ())
    assert not tenants.open
    TokenVerifier(tenants.token_digests())  # every digest is a valid verifier entry
    assert [t.name for _, t in tenants.token_digests()] == ["acme", "bravo", "bravo"]


def test_no_file_is_the_open_mode(monkeypatch):
    monkeypatch.delenv("INSPATIO_TENANTS_FILE", raising=False)
    assert Tenants.from_env().open


@pytest.mark.parametrize("document, field", [
    ([], "exactly one key"), ({"tenants": []}, "non-empty"), ({"tenants": [], "extra": 1}, "exactly one key"),
    ({"tenants": [tenant(colour="red")]}, "tenants[0]: unknown key(s) ['colour']"),
    ({"tenants": [{"name": "acme"}]}, "tenants[0]: token_sha256 is missing"),
    ({"tenants": [tenant(name="a/b")]}, "tenants[0].name"), ({"tenants": [tenant(name="..")]}, "tenants[0].name"),
    ({"tenants": [tenant(name=3)]}, "tenants[0].name"),
    ({"tenants": [tenant(token_sha256=[])]}, "tenants[0].token_sha256"),
    ({"tenants": [tenant(token_sha256=DIGEST)]}, "tenants[0].token_sha256"),
    ({"tenants": [tenant(token_sha256=["my-plain-token"])]}, "tenants[0].token_sha256[0]"),
    ({"tenants": [tenant(token_sha256=[DIGEST.upper()])]}, "tenants[0].token_sha256[0]"),
    ({"tenants": [tenant(input_prefixes=[f"s3://{BUCKET}/datasets/acme"])]}, "tenants[0].input_prefixes[0]"),
    ({"tenants": [tenant(input_prefixes=["datasets/acme/"])]}, "tenants[0].input_prefixes[0]"),
    ({"tenants": [tenant(input_prefixes=[f"s3://{BUCKET}/a/../b/"])]}, "tenants[0].input_prefixes[0]"),
    ({"tenants": [tenant(input_prefixes=[f"s3://{BUCKET}/tenants/bravo/"])]}, "tenants[0].input_prefixes[0]"),
    ({"tenants": [tenant(input_prefixes=["s3://Bad_Bucket/a/"])]}, "tenants[0].input_prefixes[0]"),
    ({"tenants": [tenant(max_concurrent_jobs=0)]}, "tenants[0].max_concurrent_jobs"),
    ({"tenants": [tenant(max_upload_bytes=True)]}, "tenants[0].max_upload_bytes"),
    ({"tenants": [tenant(max_output_frames=1.5)]}, "tenants[0].max_output_frames"),
    ({"tenants": [tenant(max_concurrent_sessions=0)]}, "tenants[0].max_concurrent_sessions"),
    ({"tenants": [tenant(), tenant(token_sha256=["b" * 64])]}, "'acme' appears twice"),
    ({"tenants": [tenant(), tenant(name="bravo")]}, "share a token digest"),
])  # fmt: skip
def test_a_bad_file_is_refused_naming_the_file_and_field(tmp_path, document, field):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(document))
    with pytest.raises(TenantsFileError) as caught:
        Tenants.from_file(path)
    assert f"INSPATIO_TENANTS_FILE {path}" in str(caught.value) and field in str(caught.value), str(caught.value)


def test_an_unreadable_or_non_json_file_is_refused(tmp_path):
    with pytest.raises(TenantsFileError, match="cannot read"):
        Tenants.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{tenants: ")
    with pytest.raises(TenantsFileError, match="not valid JSON"):
        Tenants.from_file(tmp_path / "bad.json")


def test_input_prefixes_must_be_in_the_deployments_bucket():
    tenants = Tenants.from_document({"tenants": [tenant(input_prefixes=["s3://elsewhere/datasets/"])]})
    with pytest.raises(TenantsFileError, match="'elsewhere/datasets/'|elsewhere"):
        tenants.check_bucket(BUCKET)
    tenants.check_bucket("elsewhere")


def test_a_tenant_reads_its_uploads_and_prefixes_only():
    acme = Tenant("acme", (DIGEST,), (f"s3://{BUCKET}/datasets/acme/",))
    for key in ("tenants/acme/uploads/x/clip.mp4", "datasets/acme/clip.mp4", "datasets/acme/deeper/clip.mp4"):
        acme.check_readable(BUCKET, key)
    for key in ("tenants/bravo/uploads/x/clip.mp4", "uploads/x/clip.mp4", "datasets/acme-other/clip.mp4",
                "datasets/acme", "tenants/acme/jobs/j1/manifest.json", "cache/generate/x/pred.mp4"):
        with pytest.raises(PermissionDenied) as caught:
            acme.check_readable(BUCKET, key)
        assert "tenants/acme/uploads/" in str(caught.value) and "datasets/acme/" in str(caught.value)


def test_the_open_mode_reads_anything_but_the_tenants_objects():
    ANONYMOUS.check_readable(BUCKET, "uploads/x/clip.mp4")
    ANONYMOUS.check_readable(BUCKET, "datasets/any/clip.mp4")
    with pytest.raises(PermissionDenied, match="tenants/"):
        ANONYMOUS.check_readable(BUCKET, "tenants/acme/uploads/x/clip.mp4")


def test_a_manifest_written_before_tenants_loads_as_the_open_modes():
    old = {"job_id": "j1", "state": "queued", "options": {"trajectory_name": "zoom_out_in.txt"},
           "video": {"key": "uploads/x/clip.mp4", "sha256": DIGEST, "size": 1}, "created": 1.0, "updated": 1.0,
           "stages": {}}  # fmt: skip
    manifest = Manifest.from_json(json.dumps(old))
    assert manifest.tenant is None and manifest.key == "jobs/j1/manifest.json"
    assert "tenant" not in json.loads(manifest.to_json())  # open mode writes what older coordinators read
    assert Manifest.from_json(manifest.with_(tenant="acme").to_json()).key == "tenants/acme/jobs/j1/manifest.json"


def test_token_new_prints_a_fresh_token_and_its_digest(capsys):
    assert main(["token", "new"]) == 0
    first = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert main(["token", "new"]) == 0
    second = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert json.loads(first["token_sha256"]) == token_digest(first["token"])
    assert len(first["token"]) >= 40 and first["token"] != second["token"]
    Tenants.from_document({"tenants": [tenant(token_sha256=[json.loads(first["token_sha256"])])]})  # pastes as is
