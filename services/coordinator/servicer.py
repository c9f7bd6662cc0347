"""CoordinatorService over `jobs.manager.JobManager`.

Every call acts for one tenant: the principal its bearer token maps to (rpc/auth.py, checked by the
server's interceptor before the call gets here), or the anonymous tenant in open mode. The manager
keeps tenants apart; this layer picks the tenant and combines its limits with the deployment's.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable, Iterator

import grpc

from inspatio_world.jobs.admission import Limits, admit
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.tenants import ANONYMOUS, Tenant, Tenants
from inspatio_world.refusals import FieldError, QuotaExceeded, Unauthenticated, fields_under
from inspatio_world.rpc.auth import current_principal
from inspatio_world.rpc.convert import event_to_proto, job_to_proto
from inspatio_world.rpc.options_proto import options_from_proto
from inspatio_world.rpc.generated import coordinator_pb2, coordinator_pb2_grpc


def key_from_uri(uri: str, bucket: str, field: str = "video_uri") -> str:
    """`s3://<bucket>/<key>` of this deployment's bucket -> key."""
    prefix = f"s3://{bucket}/"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise FieldError(field, f"{field} {uri!r}: expected {prefix}<key> (inputs must be in this deployment's bucket)")
    return uri[len(prefix):]


def call_tenant(tenants: Tenants) -> Tenant:
    """The tenant the call being served acts for (ANONYMOUS in open mode); shared with the sessions' servicer."""
    if tenants.open:
        return ANONYMOUS
    principal = current_principal()
    if not isinstance(principal, Tenant) or principal not in tenants.tenants:
        # Fails closed: a server wired without the tenants' verifier serves nobody.
        raise Unauthenticated("this call carries no tenant's token")
    return principal


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServiceServicer):
    def __init__(self, manager: JobManager, tenants: Tenants = Tenants()) -> None:
        """`tenants`: open mode when empty. With tenants, serve it from a ServiceServer whose verifier
        maps their tokens to them (TokenVerifier(tenants.token_digests())); a call without a tenant is refused."""
        self.manager = manager
        self.store = manager.store
        self.tenants = tenants

    def _tenant(self) -> Tenant:
        return call_tenant(self.tenants)

    @fields_under("spec")  # the library names JobSpec fields ("options.seed"); refusals name the request's
    def SubmitJob(self, request_iterator, context) -> coordinator_pb2.Job:
        tenant = self._tenant()
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "spec":
            raise ValueError("the first SubmitJob message must carry the job spec")
        spec = first.spec
        options = options_from_proto(spec.options)
        limits = tenant_limits(Limits.from_env(), tenant)
        options.validate(limits.max_output_frames)  # before a byte of the video is read
        self.manager.check_version(options)  # FAILED_PRECONDITION: no generator here serves it
        self.manager.check_capacity(tenant)  # before the upload too; submit checks again, atomically
        # Everything knowable before the stages run is checked on the received file, before it is stored.
        def admission(path, name):
            planned = admit(path, options, limits, name, source)  # source: the video's JobSpec field
            _whole_upload(context)
            return planned

        source = spec.WhichOneof("video")
        if spec.HasField("images"):
            if source is not None:
                raise FieldError("images", f"give a video ({source}) or images, not both")
            return self._submit_images(spec, options, limits, tenant, request_iterator, context)
        if source == "upload_name":
            video = self.manager.upload_video(_chunks(request_iterator), spec.upload_name, admit=admission,
                                              tenant=tenant)  # fmt: skip
        elif source == "video_uri":
            _spec_alone(request_iterator)
            key = key_from_uri(spec.video_uri, self.store.bucket)
            video = self.manager.video_from_store(key, admit=admission, tenant=tenant)
        else:
            raise ValueError("the job spec names no video: set upload_name (and stream chunks) or video_uri")
        return job_to_proto(self.store, self.manager.submit(options, video, tenant))

    def _submit_images(self, spec, options, limits: Limits, tenant: Tenant, request_iterator, context) -> coordinator_pb2.Job:
        """An image job (v1.5): its options first, then every picture is received or read, checked together
        (count, format, size) and only then stored."""
        sources = list(spec.images.images)
        if len(sources) not in (1, 4):
            raise FieldError("images.images", f"an image job takes 1 picture or 4 views of one place, got {len(sources)}")
        options.validate_for_images(len(sources), limits.max_output_frames)
        kinds = [source.WhichOneof("source") for source in sources]
        for index, kind in enumerate(kinds):
            if kind is None:
                raise FieldError(f"images.images[{index}]", "names no picture: set image_uri, or upload_name and send its bytes")
        geometry = spec.images.geometry.WhichOneof("source") if spec.images.HasField("geometry") else None
        uploads = {i for i, kind in enumerate(kinds) if kind == "upload_name"} | ({GEOMETRY} if geometry == "upload_name" else set())
        received = _image_chunks(request_iterator, uploads, tenant)
        _whole_upload(context)
        images = [self._source(source, kind, received.get(i, b""), f"images.images[{i}].image_uri")
                  for i, (source, kind) in enumerate(zip(sources, kinds))]  # fmt: skip
        given = None
        if geometry is not None:
            given = self._source(spec.images.geometry, geometry, received.get(GEOMETRY, b""), "images.geometry.image_uri")
        refs, supplied = self.manager.add_image_inputs(images, given, tenant)
        return job_to_proto(self.store, self.manager.submit(options, None, tenant, images=refs, geometry=supplied))

    def _source(self, source, kind: str, received: bytes, uri_field: str) -> tuple[str, bytes | None]:
        """(key, None) of an image_uri, or (upload_name, its bytes)."""
        if kind == "image_uri":
            return key_from_uri(source.image_uri, self.store.bucket, uri_field), None
        return source.upload_name, received

    def WatchJob(self, request, context) -> Iterator[coordinator_pb2.JobEvent]:
        tenant = self._tenant()
        # The stream holds a server thread: it ends as soon as the call does (client gone, deadline,
        # server drained), not only when the job ends.
        for event in self.manager.watch(request.job_id, on_cancel=partial(_on_termination, context), tenant=tenant):
            yield event_to_proto(self.store, request.job_id, event)

    def GetJob(self, request, context) -> coordinator_pb2.Job:
        return job_to_proto(self.store, self.manager.get(request.job_id, self._tenant()))

    def ListJobs(self, request, context) -> coordinator_pb2.ListJobsResponse:
        jobs = self.manager.list(request.limit or 100, self._tenant())
        return coordinator_pb2.ListJobsResponse(jobs=[job_to_proto(self.store, job) for job in jobs])

    def CancelJob(self, request, context) -> coordinator_pb2.Job:
        return job_to_proto(self.store, self.manager.cancel(request.job_id, self._tenant()))


def tenant_limits(limits: Limits, tenant: Tenant) -> Limits:
    """The deployment's limits, tightened by the tenant's own (the tighter of the two wins)."""
    if tenant.max_output_frames is None:
        return limits
    return replace(limits, max_output_frames=min(limits.max_output_frames, tenant.max_output_frames))


def _on_termination(context, callback: Callable[[], None]) -> None:
    if not context.add_callback(callback):
        callback()  # the call has already ended


def _whole_upload(context) -> None:
    # grpcio ends the request iterator alike when the client finishes and when a receive fails (a
    # message over the size limit, a reset stream): only a call still active sent its whole video.
    if not context.is_active():
        context.abort(grpc.StatusCode.CANCELLED, "the call ended before the whole upload arrived; nothing was stored")


def _spec_alone(request_iterator) -> None:
    # Chunks after a video_uri spec would be dropped unread: a client mixing both is refused, not half-served.
    if next(request_iterator, None) is not None:
        raise ValueError("a spec with video_uri must be the only SubmitJob message: video chunks come only with upload_name")


def _chunks(request_iterator) -> Iterator[bytes]:
    for message in request_iterator:
        if message.WhichOneof("part") != "chunk":
            raise ValueError("after the spec, SubmitJob messages must carry video chunks only")
        yield message.chunk


GEOMETRY = -1  # the geometry object's place among the uploads


def _image_chunks(request_iterator, uploads: set[int], tenant: Tenant) -> dict[int, bytes]:
    """The bytes of each uploaded picture (index into spec.images.images), from the image_chunk messages,
    and of an uploaded geometry object (GEOMETRY) from the geometry_chunk messages."""
    from inspatio_world.media.image_inputs import MAX_IMAGE_BYTES

    parts: dict[int, list[bytes]] = {index: [] for index in uploads}
    sizes = dict.fromkeys(uploads, 0)
    for message in request_iterator:
        kind = message.WhichOneof("part")
        if kind not in ("image_chunk", "geometry_chunk"):
            raise ValueError("after an image job's spec, SubmitJob messages must carry image_chunk or geometry_chunk parts only")
        if kind == "geometry_chunk":
            if GEOMETRY not in parts:
                raise FieldError("geometry_chunk", "geometry_chunk parts came, but the spec names no geometry upload_name")
            index, data = GEOMETRY, message.geometry_chunk
        else:
            index, data = message.image_chunk.index, message.image_chunk.data
        if index not in parts:
            raise FieldError("image_chunk.index", f"image_chunk index {index} names no upload_name picture of the spec")
        sizes[index] += len(data)
        if sizes[index] > MAX_IMAGE_BYTES:
            what = ("images.geometry", "the geometry object") if index == GEOMETRY else (f"images.images[{index}]", f"picture {index}")
            raise FieldError(what[0], f"{what[1]} is larger than {MAX_IMAGE_BYTES >> 20} MiB")
        if tenant.max_upload_bytes is not None and sum(sizes.values()) > tenant.max_upload_bytes:
            raise QuotaExceeded(tenant.subject, f"upload larger than this tenant's max_upload_bytes ({tenant.max_upload_bytes} bytes)")
        parts[index].append(data)
    return {index: b"".join(chunks) for index, chunks in parts.items()}
