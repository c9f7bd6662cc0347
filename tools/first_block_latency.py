"""Time from job start to the first block, render-then-generate vs render inside generate (in process,
tiny random weights, CPU or GPU): `PYTHONPATH=libs:. python tools/first_block_latency.py FRAMES H W`.
Both modes run alternately, twice, each on a fresh store with its models loaded before the clock starts."""
import hashlib, pathlib, sys, tempfile, time
from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manifest import Manifest, VideoRef
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished, JobRunner, StageFinished
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.store.local import LocalStore
from tests.support.clips import write_sample_mp4

frames, h, w = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tmp = pathlib.Path(tempfile.mkdtemp())
weights = write_tiny_weights(tmp / "w")
clip = write_sample_mp4(tmp, frames, h, w)
data = clip.read_bytes()
for rep in range(2):
    for stream in (False, True):
        store = LocalStore(tmp / f"s{rep}{stream}")
        store.put_bytes("v.mp4", data)
        stages = LocalStages(store, weights, stream_render=stream)
        _ = stages.generator  # models loaded before the clock starts, in both modes
        marks = {}
        def emit(job_id, event):
            now = time.perf_counter()
            if isinstance(event, StageFinished):
                marks.setdefault(event.timing.stage, now)
            if isinstance(event, BlockPublished):
                marks.setdefault(f"block{event.index}", now)
        runner = JobRunner(store, stages, emit)
        job = Manifest.new(JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False, prompt="a street"),
                           VideoRef("v.mp4", hashlib.sha256(data).hexdigest(), len(data), frames))
        start = time.perf_counter()
        final = runner.run(job)
        end = time.perf_counter()
        assert final.state == "succeeded", final.error
        print(f"{'streamed' if stream else 'whole   '} rep{rep}: first block {marks['block0'] - start:6.2f} s  "
              f"(depth done {marks['depth'] - start:5.2f} s, depth->first block {marks['block0'] - marks['depth']:5.2f} s, render done {marks['render'] - start:6.2f} s), job {end - start:6.2f} s, blocks {final.blocks_total}", flush=True)
