"""The four real services on 127.0.0.1 with a real S3 server (SeaweedFS), driven through the SDK:
end-to-end jobs, streamed progress with each block's frames, cache reuse seen in the services'
metrics, a coordinator killed and restarted mid-job, cancellation, bad input answered with the right
status, and the README's SDK example run as written."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from inspatio_world.client import AsyncClient, Client, JobOptions
from inspatio_world.media.decode import read_frames
from inspatio_world.rpc.generated import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.stack import LocalStack

from tests.support.clips import write_sample_mp4
from tests.support.stacks import local_stack

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "inspatio-services-test"
FRAMES, HEIGHT, WIDTH = 9, 64, 96


@pytest.fixture(scope="module")
def stack(seaweedfs, tmp_path_factory, tiny_weights):
    seaweedfs.make_store(BUCKET)  # creates the bucket
    env = {"INSPATIO_S3_ACCESS_KEY": seaweedfs.access_key, "INSPATIO_S3_SECRET_KEY": seaweedfs.secret_key,
           "INSPATIO_JOB_LEASE_SECONDS": "2", "INSPATIO_DEVICE": "cpu"}  # fmt: skip
    logs = tmp_path_factory.mktemp("logs")
    store_url = f"s3://{BUCKET}?endpoint={seaweedfs.endpoint}&secure=0"
    with local_stack(store_url, tiny_weights.root, default_ports=False, log_dir=logs, extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def store(seaweedfs):
    return seaweedfs.make_store(BUCKET)


@pytest.fixture
def client(stack):
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, HEIGHT, WIDTH)


def _metric(stack: LocalStack, service: str, pattern: str) -> float:
    text = urllib.request.urlopen(f"http://{stack.metrics_addresses[service]}/metrics").read().decode()
    values = [float(m.group(1)) for m in re.finditer(pattern + r"\s+([0-9.e+-]+)", text)]
    return sum(values)


def _hits(stack: LocalStack, service: str, stage: str) -> float:
    return _metric(stack, service, r'inspatio_cache_lookups_total\{[^}]*result="hit"[^}]*stage="' + stage + r'"[^}]*\}')


def test_job_through_the_sdk_streams_blocks_and_writes_outputs(client, video, tmp_path):
    job = client.submit(video, JobOptions.for_trajectory("x_y_circle_cycle.txt", adaptive_frames=False))
    events = []
    final = client.wait(job.job_id, on_event=events.append)
    assert final.state == "succeeded", final.error
    kinds = [e.kind for e in events]
    assert "block" in kinds and kinds.index("block") < kinds.index("finished")
    assert {e.stage for e in events if e.kind == "stage_finished"} == {"caption", "depth", "render", "generate"}
    written = client.download(final, tmp_path)
    for name in ("pred", "source", "render"):
        assert read_frames(written[name]).shape == (9, 3, 64, 112)
    assert read_frames(written["compare"]).shape == (9, 3, 64, 336)
    assert '"state": "succeeded"' in written["manifest"].read_text()


def test_second_trajectory_hits_the_caption_and_depth_cache(stack, client, video):
    first = client.wait(client.submit(video, JobOptions.for_trajectory("zoom_out_in.txt", adaptive_frames=False)).job_id)
    caption_hits, depth_hits = _hits(stack, "caption", "caption"), _hits(stack, "depthrender", "depth")
    second = client.wait(client.submit(video, JobOptions.for_trajectory("pan_left.txt", adaptive_frames=False)).job_id)
    assert first.state == second.state == "succeeded"
    assert second.timings["caption"][1] and second.timings["depth"][1]
    assert _hits(stack, "caption", "caption") == caption_hits + 1
    assert _hits(stack, "depthrender", "depth") == depth_hits + 1
    assert not second.timings["render"][1]


def test_coordinator_killed_mid_job_and_restarted_completes_the_job(stack, video):
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        # adaptive frames bounce 9 frames to 121: ten blocks, time enough to kill the coordinator
        job = client.submit(video, JobOptions.for_trajectory("orbit_left.txt", seed=11))
        for event in client.watch(job.job_id):
            if event.kind == "block":
                break
    stack.stop_service("coordinator", signal.SIGKILL)
    stack.restart_service("coordinator")
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        final = client.wait(job.job_id, timeout=600)
        assert final.state == "succeeded", final.error
        assert final.blocks_done == final.blocks_total == 10


def test_cancelled_job_stops_its_stages(stack, client, video):
    frames_before = _metric(stack, "generator", r"inspatio_frames_generated_total")
    job = client.submit(video, JobOptions.for_trajectory("orbit_left.txt", seed=12))
    for event in client.watch(job.job_id):
        if event.kind == "block":
            final = client.cancel(job.job_id, wait=True, timeout=120)  # returns once the job has stopped
            break
    assert final.state == "cancelled"
    assert final.blocks_done < 10 and "pred" not in final.outputs
    generated = _metric(stack, "generator", r"inspatio_frames_generated_total") - frames_before
    assert generated < 121  # the generator stopped early


def test_block_events_carry_their_frames_while_the_job_runs(client, video, tmp_path):
    # 9 frames + 12 frozen = 21 frames: two blocks (9 + 12 frames)
    job = client.submit(video, JobOptions.for_trajectory("pan_left.txt", adaptive_frames=False, freeze_repeat=12, seed=21))
    blocks = []
    for event in client.watch(job.job_id):
        if event.kind == "block":
            assert event.chunk_url and event.chunk_key.endswith(".mkv"), event
            path = client.fetch_block(event, tmp_path)  # fetched before the job has finished
            blocks.append((event, read_frames(path)))
    final = event.status  # the last event is "finished"
    assert final.state == "succeeded", final.error
    assert [e.block_index for e, _ in blocks] == list(range(final.blocks_total)) and len(blocks) == 2
    assert [e.first_frame for e, _ in blocks] == [0, blocks[0][0].frames]
    for event, frames in blocks:
        assert frames.shape == (event.frames, 3, 64, 112)
    assert sum(e.frames for e, _ in blocks) == read_frames(client.download(final, tmp_path / "out")["pred"]).shape[0] == 21


def test_get_reports_the_options_the_input_video_and_times(client, video):
    options = JobOptions.for_trajectory("dolly_in.txt", adaptive_frames=False, seed=23, prompt="a quiet street")
    final = client.wait(client.submit(video, options).job_id)
    status = client.get(final.job_id)
    assert status.state == "succeeded", status.error
    assert status.options == options  # every option, as submitted
    assert status.video.sha256 == hashlib.sha256(video.read_bytes()).hexdigest()
    assert status.video.size == video.stat().st_size and status.video.key
    assert 0 < status.created_unix <= status.updated_unix
    data = json.loads(json.dumps(status.to_dict()))
    assert data["options"]["seed"] == 23 and data["video"]["sha256"] == status.video.sha256
    assert data["outputs"]["pred"]["url"] and set(data["timings"]["generate"]) == {"seconds", "cache_hit"}


def _readme_sdk_example() -> str:
    section = (ROOT / "README.md").read_text().split("\n### SDK\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_sdk_example_runs_as_written(stack, tmp_path):
    code = _readme_sdk_example()
    assert "127.0.0.1:50051" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace("127.0.0.1:50051", stack.addresses["coordinator"]))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["compare.mp4", "manifest.json", "pred.mp4", "render.mp4", "source.mp4"]
    assert "block" in done.stdout and any((tmp_path / "blocks").glob("block_*.mkv"))  # frames seen while it ran


def _submit_raw(stack, messages):
    with grpc.insecure_channel(stack.addresses["coordinator"]) as channel:
        return coordinator_pb2_grpc.CoordinatorServiceStub(channel).SubmitJob(iter(messages), timeout=60)


def _spec(**video) -> coordinator_pb2.SubmitJobRequest:
    options = common_pb2.JobOptions(trajectory=common_pb2.Trajectory(shipped_name="zoom_out_in.txt"))
    return coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(options=options, **video))


@pytest.mark.parametrize(
    "messages, code, message",
    [
        ([_spec(upload_name="x.mp4"), coordinator_pb2.SubmitJobRequest(chunk=b"\x00garbage" * 100)], grpc.StatusCode.INVALID_ARGUMENT, "x.mp4"),
        ([_spec(upload_name="x.mp4")], grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ([_spec(video_uri=f"s3://{BUCKET}/uploads/nope.mp4")], grpc.StatusCode.NOT_FOUND, "not found"),
        ([_spec(video_uri="s3://other-bucket/x.mp4")], grpc.StatusCode.INVALID_ARGUMENT, "this deployment's bucket"),
        ([coordinator_pb2.SubmitJobRequest(chunk=b"abc")], grpc.StatusCode.INVALID_ARGUMENT, "first SubmitJob message"),
        ([coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(
            options=common_pb2.JobOptions(trajectory=common_pb2.Trajectory(text="1 2\n3 nan\n0 0\n")), upload_name="x.mp4"))],
         grpc.StatusCode.INVALID_ARGUMENT, "not a finite number"),
        ([coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(
            options=common_pb2.JobOptions(trajectory=common_pb2.Trajectory(shipped_name="zoom_out_in.txt"), autoencoder=7),
            upload_name="x.mp4"))], grpc.StatusCode.INVALID_ARGUMENT, "autoencoder"),
    ],
    ids=["corrupt-video", "empty-upload", "missing-object", "foreign-bucket", "no-spec", "bad-trajectory", "unknown-option"],
)
def test_bad_input_gets_a_clear_status_and_leaves_nothing(stack, store, messages, code, message):
    uploads_before = sorted(info.key for info in store.list("uploads/"))
    with pytest.raises(grpc.RpcError) as error:
        _submit_raw(stack, messages)
    assert error.value.code() == code
    assert message in error.value.details()
    assert sorted(info.key for info in store.list("uploads/")) == uploads_before


def test_unknown_job_is_not_found(client):
    with pytest.raises(grpc.RpcError) as error:
        client.get("no-such-job")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_cli_reports_a_server_error_in_one_line(stack):
    done = subprocess.run([sys.executable, "-m", "inspatio_world.cli", "get", "no-such-job",
                           "--coordinator", stack.addresses["coordinator"]], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: NOT_FOUND: ") and "no-such-job" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_prometheus_scrapes_the_services_and_answers_a_generator_query(stack, client, video):
    from inspatio_world.stack import free_port
    from tests.support.prometheus import Prometheus

    targets = {name: address for name, address in stack.metrics_addresses.items()}
    with Prometheus(targets, free_port()) as prometheus:
        up = prometheus.wait_for("up", lambda r: len(r) == 4 and all(s["value"][1] == "1" for s in r))
        assert sorted(s["metric"]["job"] for s in up) == ["caption", "coordinator", "depthrender", "generator"]
        before = float(prometheus.query('inspatio_frames_generated_total{job="generator"}')[0]["value"][1])
        job = client.wait(client.submit(video, JobOptions.for_trajectory("tilt_up.txt", adaptive_frames=False, seed=5)).job_id)
        assert job.state == "succeeded"
        result = prometheus.wait_for('inspatio_frames_generated_total{job="generator"}',
                                     lambda r: r and float(r[0]["value"][1]) >= before + 9)  # fmt: skip
        assert float(result[0]["value"][1]) == before + 9  # the job generated one 9-frame block
        blocks = prometheus.query('inspatio_block_seconds_count{job="generator"}')
        assert float(blocks[0]["value"][1]) >= 1


def test_async_client_submits_waits_lists_and_downloads(stack, video, tmp_path):
    async def scenario():
        async with AsyncClient(stack.addresses["coordinator"], timeout=120) as client:
            job = await client.submit(video, JobOptions.for_trajectory("pan_right.txt", adaptive_frames=False, seed=3))
            events = []
            final = await client.wait(job.job_id, on_event=events.append)
            listed = [status.job_id for status in await client.list(limit=50)]
            block = next(e for e in events if e.kind == "block")
            chunk = await client.fetch_block(block, tmp_path / "block.mkv")
            written = await client.download(final, tmp_path / "out")
            return job, final, events, listed, await client.get(job.job_id), chunk, written

    job, final, events, listed, fetched, chunk, written = asyncio.run(scenario())
    assert final.state == fetched.state == "succeeded"
    assert job.job_id in listed
    assert read_frames(chunk).shape[0] == 9 and read_frames(written["pred"]).shape[0] == 9
    assert sorted(written) == ["compare", "manifest", "pred", "render", "source"]
