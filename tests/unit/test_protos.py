"""The committed gRPC stubs are exactly what `make proto` generates from protos/ (never stale)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "libs" / "inspatio_world" / "rpc" / "generated"


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_protos", REPO / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_are_up_to_date(tmp_path):
    fresh = {p.name: p.read_text() for p in _load_generator().generate(tmp_path / "generated")}
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed), "stub files differ: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make proto`"


def test_stubs_import_as_one_package():
    from inspatio_world.rpc.generated import coordinator_pb2, coordinator_pb2_grpc

    job = coordinator_pb2.Job(job_id="j1", state=coordinator_pb2.JOB_STATE_RUNNING)
    assert coordinator_pb2.Job.FromString(job.SerializeToString()) == job
    assert hasattr(coordinator_pb2_grpc, "CoordinatorServiceStub")
