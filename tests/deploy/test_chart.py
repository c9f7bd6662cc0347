"""The Helm chart in deploy/helm/inspatio-world, checked without a cluster.

helm lint --strict and helm template for the defaults and the ci/ scenarios (external S3, in-cluster
MinIO, KEDA, HPA, scale to zero); every built-in object validated offline against the Kubernetes
1.37 schemas with `kubernetes-validate --strict`; CRD objects (KEDA, Prometheus Operator), which
have no bundled schema, checked structurally; and the properties the deployment relies on asserted
on the rendered objects. What only a cluster can show is listed in deploy/README.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inspatio_world import envvars
from inspatio_world.rpc.bootstrap import DEFAULT_PORTS
from inspatio_world.rpc.server import DEFAULT_GRACE_SECONDS
from inspatio_world.store.factory import open_store
from inspatio_world.store.s3 import S3Store

from tests.support.helm import CHART, NAMESPACE, RELEASE, Helm, Rendered

from .conftest import SCENARIOS

ROLES = ("coordinator", "caption", "depthrender", "generator")
STAGES = ROLES[1:]
GPU = "nvidia.com/gpu"
PREFIX = f"{RELEASE}-inspatio-world"
GRPC_SERVICE = {"coordinator": "inspatio.world.v1.CoordinatorService", "caption": "inspatio.world.v1.CaptionService",
                "depthrender": "inspatio.world.v1.DepthRenderService", "generator": "inspatio.world.v1.GeneratorService"}  # fmt: skip
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(deployment)["env"]}


def env_value(deployment: dict, name: str) -> str:
    return env_of(deployment)[name]["value"]


def named_port(deployment: dict, name: str) -> int:
    return next(p["containerPort"] for p in container(deployment)["ports"] if p["name"] == name)


def selects(selector: dict, labels: dict) -> bool:
    """Does a matchLabels/matchExpressions selector select an object with `labels`?"""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        ok = {"In": present and value in expr.get("values", []), "NotIn": value not in expr.get("values", []),
              "Exists": present, "DoesNotExist": not present}[expr["operator"]]  # fmt: skip
        if not ok:
            return False
    return True


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


# ----------------------------------------------------------------------------------- lint + schemas


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm: Helm, scenario: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    if SCENARIOS[scenario] is not None:
        args += ["-f", str(SCENARIOS[scenario])]
    out = helm.run(*args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_builtin_objects_pass_kubernetes_schemas_strictly(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    """kubernetes-validate --strict (unknown fields rejected) on every built-in object of every scenario."""
    exe = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert exe, "kubernetes-validate is not installed in this environment (pip install kubernetes-validate)"
    files, expected = [], 0
    for name, result in rendered.items():
        builtin = [o for o in result.objects if o["kind"] not in CRD_KINDS]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(builtin))
        files.append(str(path))
        expected += len(builtin)
    done = subprocess.run([exe, "--strict", "-k", "1.37.0", *files], capture_output=True, text=True, timeout=120)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "ERROR" not in report and "WARN" not in report, report  # a WARN means: no schema was found
    assert report.count(" passed for resource ") == expected, report


def test_crd_objects_are_well_formed(rendered: dict[str, Rendered]) -> None:
    """No schema is bundled for KEDA and the Prometheus Operator: check what their controllers read."""
    for scenario in ("keda", "scale-to-zero"):
        result = rendered[scenario]
        scaled = result.kind("ScaledObject")
        assert sorted(o["metadata"]["name"] for o in scaled) == sorted(f"{PREFIX}-{s}" for s in STAGES)
        deployments = {o["metadata"]["name"] for o in result.kind("Deployment")}
        for obj in scaled:
            assert obj["apiVersion"] == "keda.sh/v1alpha1"
            spec = obj["spec"]
            assert set(spec) <= {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "minReplicaCount",
                                 "maxReplicaCount", "advanced", "triggers", "idleReplicaCount", "fallback"}  # fmt: skip
            assert spec["scaleTargetRef"]["name"] in deployments
            assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
            assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
            assert set(spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]) == {"scaleUp", "scaleDown"}
            for trigger in spec["triggers"]:
                assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
                meta = trigger["metadata"]
                # KEDA trigger metadata is map[string]string: a bare number here fails admission
                assert all(isinstance(v, str) for v in meta.values()), meta
                assert {"serverAddress", "query", "threshold"} <= set(meta)
                assert float(meta["threshold"]) > 0 and meta["serverAddress"].startswith("http")
                assert meta["query"].count("(") == meta["query"].count(")")
    monitors = rendered["external-s3"].kind("ServiceMonitor")
    assert len(monitors) == 1
    monitor = monitors[0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    # the services' own `service` label (gRPC name) must survive: queries and recording rules use it
    assert endpoint == {**endpoint, "port": "metrics", "path": "/metrics", "honorLabels": True}
    selected = [s for s in rendered["external-s3"].kind("Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert sorted(s["metadata"]["name"] for s in selected) == sorted(f"{PREFIX}-{r}" for r in ROLES)
    assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in selected)
    assert not rendered["default"].kind("ServiceMonitor") and not rendered["default"].kind("ScaledObject")


# ----------------------------------------------------------------------------------- placement + GPUs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_gpu_stage_on_its_own_pool_with_exactly_one_gpu(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    pools = set()
    for role in STAGES:
        spec = result.deployment(role)["spec"]["template"]["spec"]
        pool = spec["nodeSelector"]["inspatio.io/pool"]
        pools.add(pool)
        tolerations = spec["tolerations"]
        assert {"key": "inspatio.io/pool", "operator": "Equal", "value": pool, "effect": "NoSchedule"} in tolerations
        assert any(t["key"] == GPU and t["effect"] == "NoSchedule" for t in tolerations)
        resources = container(result.deployment(role))["resources"]
        assert resources["requests"][GPU] == 1 and resources["limits"][GPU] == 1
        assert all(GPU not in (c.get("resources", {}).get("limits", {})) for c in spec.get("initContainers", []))
        assert env_value(result.deployment(role), envvars.DEVICE.name) == "cuda"
    assert len(pools) == 3, pools


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_gpu_stages_ask_for_gpus(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    coordinator = result.deployment("coordinator")
    spec = coordinator["spec"]["template"]["spec"]
    assert GPU not in str(container(coordinator)["resources"])
    assert "inspatio.io/pool" not in spec.get("nodeSelector", {})
    assert not any(t.get("key") == GPU for t in spec.get("tolerations", []))
    for name, pod in result.pod_specs():
        if not any(name.endswith(f"-{s}") for s in STAGES):
            assert GPU not in str(pod.get("containers")), name


def test_a_stage_can_run_without_gpu(helm: Helm) -> None:
    result = helm.template(sets=("caption.gpus=0",))
    caption = result.deployment("caption")
    assert GPU not in str(container(caption)["resources"])
    assert env_value(caption, envvars.DEVICE.name) == "cpu"


# ----------------------------------------------------------------------------------- probes, security


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_are_native_grpc_on_the_grpc_port(rendered: dict[str, Rendered], scenario: str) -> None:
    for role in ROLES:
        deployment = rendered[scenario].deployment(role)
        c = container(deployment)
        port = named_port(deployment, "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(c[probe]) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"grpc"}, (role, probe)
            assert c[probe]["grpc"]["port"] == port
        # loading weights may take minutes: the startup probe must allow for it before liveness starts
        startup = c["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= (60 if role == "coordinator" else 600), (role, budget)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_runs_as_non_root_on_a_read_only_root(rendered: dict[str, Rendered], scenario: str) -> None:
    specs = rendered[scenario].pod_specs()
    assert len(specs) >= 5  # four services + the helm test pod (+ MinIO, the weights Job)
    for name, pod in specs:
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            # a read-only root: whatever the process writes must land on a mounted volume
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["name"] != "wait-for-weights":
                assert "/tmp" in mounts, (name, c["name"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resources_and_disruption_budgets(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    pdbs = result.kind("PodDisruptionBudget")
    for name, pod in result.pod_specs():
        for c in pod["containers"] + pod.get("initContainers", []):
            r = c["resources"]
            assert "memory" in r["requests"] and "memory" in r["limits"], (name, c["name"])
            assert "cpu" in r["requests"], (name, c["name"])
    for role in ROLES:
        labels = pod_labels(result.deployment(role))
        covering = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
        assert len(covering) == 1, role
        spec = covering[0]["spec"]
        # a single-replica stage must not block node drains forever
        assert spec.get("maxUnavailable") == 1 and "minAvailable" not in spec


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_termination_grace_outlasts_the_drain(rendered: dict[str, Rendered], scenario: str) -> None:
    for role in ROLES:
        deployment = rendered[scenario].deployment(role)
        pod = deployment["spec"]["template"]["spec"]
        sleep = container(deployment).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        drain = float(env_value(deployment, envvars.DRAIN_SECONDS.name))
        assert drain >= DEFAULT_GRACE_SECONDS, role  # never shorter than the services' own default
        assert pod["terminationGracePeriodSeconds"] > sleep + drain, role


def test_a_grace_period_shorter_than_the_drain_is_refused(helm: Helm) -> None:
    done = helm.run(*helm.template_args(sets=("generator.terminationGracePeriodSeconds=35",)), check=False)
    assert done.returncode != 0
    assert "generator.terminationGracePeriodSeconds (35) must exceed preStopSleepSeconds (5) + drainSeconds (120)" in done.stderr
    # a longer drain needs a longer grace period too
    done = helm.run(*helm.template_args(sets=("caption.drainSeconds=60",)), check=False)
    assert done.returncode != 0 and "set it to at least 66" in done.stderr


# ----------------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ports_services_and_environment_agree(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    known = {v.name for v in envvars.ALL} | {"HOME"}
    for role in ROLES:
        deployment = result.deployment(role)
        grpc_port, metrics_port = named_port(deployment, "grpc"), named_port(deployment, "metrics")
        assert (grpc_port, metrics_port) == DEFAULT_PORTS[role]  # the README's port plan
        env = env_of(deployment)
        assert env[envvars.GRPC_ADDRESS.name]["value"] == f"0.0.0.0:{grpc_port}"
        assert env[envvars.METRICS_ADDRESS.name]["value"] == f"0.0.0.0:{metrics_port}"
        assert set(env) <= known | {"INSPATIO_ATTENTION"}, set(env) - known
        # args, not command: the image's entrypoint (tini) must stay PID 1 to forward SIGTERM
        assert container(deployment)["args"] == ["python", "-m", f"services.{role}.main"]
        assert "command" not in container(deployment)
        assert container(deployment)["image"].endswith(f"inspatio-world/{role}:0.1.0")
        service = result.get("Service", f"{PREFIX}-{role}")
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
        assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
            "grpc": (grpc_port, "grpc"), "metrics": (metrics_port, "metrics")}
        # no other Deployment's pods behind this Service
        others = [d for d in result.kind("Deployment") if d is not deployment]
        assert not any(selects({"matchLabels": service["spec"]["selector"]}, pod_labels(d)) for d in others)
    coordinator = result.deployment("coordinator")
    for stage, var in zip(STAGES, (envvars.CAPTION_ADDRESS, envvars.DEPTHRENDER_ADDRESS, envvars.GENERATOR_ADDRESS)):
        host = f"{PREFIX}-{stage}.{NAMESPACE}.svc.cluster.local"
        assert env_value(coordinator, var.name) == f"{host}:{DEFAULT_PORTS[stage][0]}"
    # a stage waking from zero may use its whole startup allowance: the coordinator waits longer
    wait = float(env_value(coordinator, envvars.STAGE_WAIT_SECONDS.name))
    for stage in STAGES:
        probe = container(result.deployment(stage))["startupProbe"]
        assert wait > probe["periodSeconds"] * probe["failureThreshold"], stage


def test_extra_env_replaces_chart_values_without_duplicates(helm: Helm) -> None:
    result = helm.template(sets=("env.INSPATIO_ATTENTION=sdpa", "generator.env.INSPATIO_ATTENTION=flash3",
                                 "generator.env.INSPATIO_MAX_QUEUE=8"))  # fmt: skip
    names = [e["name"] for e in container(result.deployment("generator"))["env"]]
    assert len(names) == len(set(names))
    assert env_value(result.deployment("generator"), "INSPATIO_MAX_QUEUE") == "8"
    assert env_value(result.deployment("generator"), "INSPATIO_ATTENTION") == "flash3"
    assert env_value(result.deployment("caption"), "INSPATIO_ATTENTION") == "sdpa"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_store_url_and_credentials(rendered: dict[str, Rendered], scenario: str) -> None:
    """INSPATIO_STORE is accepted by the services' own parser; the keys come from one Secret."""
    result = rendered[scenario]
    expected_secret = {"external-s3": "acme-s3-credentials", "minio": f"{PREFIX}-s3"}.get(scenario, "inspatio-world-s3")
    urls = set()
    for role in ROLES:
        env = env_of(result.deployment(role))
        urls.add(env[envvars.STORE.name]["value"])
        for var in (envvars.S3_ACCESS_KEY.name, envvars.S3_SECRET_KEY.name):
            assert "value" not in env[var]  # never a literal key in a pod spec
            assert env[var]["valueFrom"]["secretKeyRef"]["name"] == expected_secret
    (url,) = urls
    store = open_store(url, env={envvars.S3_ACCESS_KEY.name: "a", envvars.S3_SECRET_KEY.name: "b"})
    assert isinstance(store, S3Store)
    secrets = result.kind("Secret")
    if scenario == "external-s3":
        assert (store.endpoint, store.bucket) == ("s3.eu-central-1.amazonaws.com:443", "acme-inspatio")
        assert "region=eu-central-1" in url and "secure=1" in url
        keys = env_of(result.deployment("generator"))[envvars.S3_ACCESS_KEY.name]["valueFrom"]["secretKeyRef"]["key"]
        assert keys == "AWS_ACCESS_KEY_ID" and not secrets
    elif scenario == "minio":
        assert store.endpoint == f"{PREFIX}-minio.{NAMESPACE}.svc.cluster.local:9000" and "secure=0" in url
        (secret,) = secrets
        assert secret["metadata"]["name"] == expected_secret and set(secret["data"]) == {"access-key", "secret-key"}
        minio = result.get("Deployment", f"{PREFIX}-minio")
        minio_env = {e["name"]: e for e in minio["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert minio_env["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"] == {"name": expected_secret, "key": "access-key"}
        assert result.get("Service", f"{PREFIX}-minio")["spec"]["ports"][0]["port"] == 9000
        pvc = result.get("PersistentVolumeClaim", f"{PREFIX}-minio")
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    else:
        assert store.endpoint == "s3.amazonaws.com" and not secrets
    if scenario != "minio":
        assert not [d for d in result.kind("Deployment") if d["metadata"]["name"].endswith("-minio")]


def test_external_s3_needs_keys_or_a_secret(helm: Helm) -> None:
    done = helm.run(*helm.template_args(sets=("store.credentials.existingSecret=",)), check=False)
    assert done.returncode != 0 and "store.credentials: set existingSecret" in done.stderr
    result = helm.template(sets=("store.credentials.existingSecret=", "store.credentials.accessKey=AK",
                                 "store.credentials.secretKey=SK"))  # fmt: skip
    (secret,) = result.kind("Secret")
    assert secret["data"] == {"access-key": "QUs=", "secret-key": "U0s="}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_weights_are_mounted_read_only_in_the_stages_only(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    claim = "inspatio-weights" if scenario == "external-s3" else f"{PREFIX}-weights"
    for role in ROLES:
        deployment = result.deployment(role)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
        if role == "coordinator":
            assert "weights" not in volumes and envvars.WEIGHTS.name not in env_of(deployment)
            continue
        assert volumes["weights"]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
        assert mounts["weights"]["readOnly"] is True
        assert env_value(deployment, envvars.WEIGHTS.name) == mounts["weights"]["mountPath"] == "/weights"
    generator = result.deployment("generator")
    cache_mount = next(m for m in container(generator)["volumeMounts"] if m["name"] == "compile-cache")
    assert env_value(generator, envvars.COMPILE_CACHE.name).startswith(cache_mount["mountPath"] + "/")
    if scenario != "external-s3":
        pvc = result.get("PersistentVolumeClaim", claim)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_weights_download_job_and_the_stages_waiting_for_it(rendered: dict[str, Rendered]) -> None:
    result = rendered["minio"]
    (job,) = result.kind("Job")
    assert re.fullmatch(rf"{PREFIX}-weights-[0-9a-f]{{8}}", job["metadata"]["name"])
    pod = job["spec"]["template"]["spec"]
    (download,) = pod["containers"]
    assert download["args"] == ["sh", "/scripts/download.sh"] and "command" not in download
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in download["env"]
    script = result.get("ConfigMap", f"{PREFIX}-weights-download")["data"]["download.sh"]
    marker = re.search(r'marker="([^"]+)"', script).group(1)
    assert marker.startswith("/weights/.inspatio-download-") and job["metadata"]["name"].endswith(marker[-8:])
    for repo in ("inspatio/world", "Wan-AI/Wan2.1-T2V-1.3B", "depth-anything/DA3NESTED-GIANT-LARGE",
                 "florence-community/Florence-2-large"):  # fmt: skip
        assert f'"$cli" download "{repo}"' in script
    assert "taew2_1.pth" in script and script.index('date -u > "$marker"') > script.rindex("download")
    for role in STAGES:
        (wait,) = result.deployment(role)["spec"]["template"]["spec"]["initContainers"]
        assert wait["name"] == "wait-for-weights" and wait["args"][-1] == marker
    assert "initContainers" not in result.deployment("coordinator")["spec"]["template"]["spec"]
    assert "initContainers" not in rendered["default"].deployment("generator")["spec"]["template"]["spec"]


# ----------------------------------------------------------------------------------- network policy


def _rules_for_port(policy: dict, port_name: str) -> list[dict]:
    return [r for r in policy["spec"]["ingress"] if any(p["port"] == port_name for p in r["ports"])]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_network_policy_admits_only_the_coordinator_to_the_stages(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    policies = result.kind("NetworkPolicy")
    coordinator_labels = pod_labels(result.deployment("coordinator"))
    other_pods = [labels for name, labels in
                  [(d["metadata"]["name"], pod_labels(d)) for d in result.kind("Deployment")] +
                  [(p["metadata"]["name"], p["metadata"]["labels"]) for p in result.kind("Pod")]
                  if name != f"{PREFIX}-coordinator"]  # fmt: skip
    for role in STAGES:
        deployment = result.deployment(role)
        covering = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels(deployment))]
        assert len(covering) == 1, role
        policy = covering[0]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"]["ingress"]:
            assert rule.get("ports") and rule.get("from"), rule  # no rule opens every port or every peer
        (grpc_rule,) = _rules_for_port(policy, "grpc")
        assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
        (peer,) = grpc_rule["from"]
        assert set(peer) == {"podSelector"}  # same namespace, no namespaceSelector / ipBlock
        assert selects(peer["podSelector"], coordinator_labels)
        assert not any(selects(peer["podSelector"], labels) for labels in other_pods)
        for rule in _rules_for_port(policy, "metrics"):
            assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_network_policy_for_clients_and_metrics(rendered: dict[str, Rendered]) -> None:
    default = rendered["default"].get("NetworkPolicy", f"{PREFIX}-coordinator")
    (grpc_rule,) = _rules_for_port(default, "grpc")
    assert "from" not in grpc_rule  # clients from anywhere by default
    (metrics_rule,) = _rules_for_port(default, "metrics")
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    locked = rendered["external-s3"].get("NetworkPolicy", f"{PREFIX}-coordinator")
    (grpc_rule,) = _rules_for_port(locked, "grpc")
    assert grpc_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "video-frontend"}}}]
    minio = rendered["minio"].get("NetworkPolicy", f"{PREFIX}-minio")
    (rule,) = minio["spec"]["ingress"]
    assert rule["ports"] == [{"port": "s3", "protocol": "TCP"}]
    assert all(selects(rule["from"][0]["podSelector"], pod_labels(d)) for d in rendered["minio"].kind("Deployment"))
    assert not rendered["default"].text.count(f"name: {PREFIX}-minio")


# ----------------------------------------------------------------------------------- autoscaling


def test_keda_scales_the_stages_from_their_in_flight_requests(rendered: dict[str, Rendered]) -> None:
    result = rendered["keda"]
    for role in ROLES:
        deployment = result.deployment(role)
        # an autoscaler owns the replica count: the Deployment must not fight it on every upgrade
        assert ("replicas" in deployment["spec"]) == (role == "coordinator"), role
    for role in STAGES:
        obj = result.get("ScaledObject", f"{PREFIX}-{role}")
        (trigger,) = obj["spec"]["triggers"]
        query = trigger["metadata"]["query"]
        assert "inspatio_rpc_in_flight" in query and f'service="{GRPC_SERVICE[role]}"' in query
        assert f'namespace="{NAMESPACE}"' in query and trigger["metadata"]["threshold"] == "2"
        assert obj["spec"]["minReplicaCount"] >= 1
    assert result.get("ScaledObject", f"{PREFIX}-generator")["spec"]["maxReplicaCount"] == 8
    assert not result.kind("HorizontalPodAutoscaler")


def test_hpa_uses_an_external_metric_per_stage(rendered: dict[str, Rendered]) -> None:
    result = rendered["hpa"]
    hpas = result.kind("HorizontalPodAutoscaler")
    assert sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas) == sorted(f"{PREFIX}-{s}" for s in STAGES)
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] >= 1
        (metric,) = hpa["spec"]["metrics"]
        role = hpa["metadata"]["labels"]["app.kubernetes.io/component"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"] == {"name": "inspatio_rpc_in_flight",
                                                "selector": {"matchLabels": {"service": GRPC_SERVICE[role]}}}
        assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "2"}
    assert not result.kind("ScaledObject")


def test_scale_to_zero_for_caption_and_depth_with_keda(rendered: dict[str, Rendered]) -> None:
    result = rendered["scale-to-zero"]
    for role in ("caption", "depthrender"):
        obj = result.get("ScaledObject", f"{PREFIX}-{role}")
        assert obj["spec"]["minReplicaCount"] == 0
        names = [t["name"] for t in obj["spec"]["triggers"]]
        assert names == ["demand", "wake"]
        # at zero replicas the stage exports nothing: the wake-up signal comes from the coordinator
        wake = obj["spec"]["triggers"][1]["metadata"]["query"]
        assert GRPC_SERVICE["coordinator"] in wake and GRPC_SERVICE[role] not in wake and "[900s]" in wake
    generator = result.get("ScaledObject", f"{PREFIX}-generator")
    assert generator["spec"]["minReplicaCount"] == 1 and len(generator["spec"]["triggers"]) == 1


def test_hpa_cannot_scale_to_zero(helm: Helm) -> None:
    done = helm.run(*helm.template_args(CHART / "ci" / "hpa-values.yaml", ("depthrender.autoscaling.minReplicas=0",)),
                    check=False)  # fmt: skip
    assert done.returncode != 0 and "cannot scale to zero" in done.stderr


# ----------------------------------------------------------------------------------- values schema


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("generator.replicas=two", "at '/generator/replicas': got string, want integer"),
        ("generator.gpus=2", "at '/generator/gpus': maximum: got 2, want 1"),
        ("coordinator.gpus=1", "at '/coordinator': additional properties 'gpus' not allowed"),
        ("caption.replica=1", "at '/caption': additional properties 'replica' not allowed"),
        ("autoscaling.engine=knative", "at '/autoscaling/engine'"),
        ("coordinator.replicas=0", "at '/coordinator/replicas': minimum: got 0, want 1"),
        ("store.bucket=My_Bucket", "at '/store/bucket'"),
        ("generator.resources.requests.memory=lots", "at '/generator/resources/requests/memory'"),
        ("generator.env.BAD-NAME=1", "invalid propertyName 'BAD-NAME'"),
    ],
)
def test_values_schema_rejects_bad_values(helm: Helm, setting: str, message: str) -> None:
    done = helm.run(*helm.template_args(sets=(setting,)), check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def test_values_yaml_documents_every_schema_key() -> None:
    """Each top-level key of values.schema.json is present (and so commented) in values.yaml."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)


# ----------------------------------------------------------------------------------- helm test, notes


def test_helm_test_hook_submits_the_sample_through_the_coordinator(rendered: dict[str, Rendered]) -> None:
    (pod,) = rendered["default"].kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"].endswith("inspatio-world/coordinator:0.1.0")
    assert "command" not in c
    script, *argv = c["args"][2:]
    assert "python -m inspatio_world.cli run" in script and "pred.mp4" in script
    assert argv[1:3] == ["--coordinator", f"{PREFIX}-coordinator.{NAMESPACE}.svc.cluster.local:50051"]
    assert argv[3:] == ["--sample", "--traj", "orbit_left.txt", "--no-adaptive-frames"]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["activeDeadlineSeconds"] > 0


def test_notes_say_how_to_reach_the_coordinator(helm: Helm) -> None:
    done = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                    "-f", str(CHART / "ci" / "minio-values.yaml"))  # fmt: skip
    notes = done.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{PREFIX}-coordinator 50051:50051" in notes
    assert "inspatio submit my_video.mp4 --traj zoom_out_in.txt --coordinator 127.0.0.1:50051" in notes
    assert f"helm test {RELEASE}" in notes and f"logs -f job/{PREFIX}-weights-" in notes


def test_names_fit_kubernetes_limits_for_the_longest_release_name(helm: Helm) -> None:
    release = "r" * 53  # helm's longest release name
    args = helm.template_args(CHART / "ci" / "minio-values.yaml")
    args[1] = release
    result = Rendered.parse(helm.run(*args).stdout)
    keys = [(o["kind"], o["metadata"]["name"]) for o in result.objects]
    assert len(set(keys)) == len(keys)  # truncation made no two objects collide
    for obj in result.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert all(len(str(v)) <= 63 for v in obj["metadata"]["labels"].values()), obj["metadata"]["labels"]


def test_autoscaling_queries_evaluate_as_intended_in_prometheus(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    """The KEDA queries, evaluated by promtool on made-up scrapes: demand sums this stage's replicas in
    this namespace (0, not nothing, at zero replicas); wake turns on when jobs reach the coordinator."""
    promtool = shutil.which("promtool")
    if promtool is None:  # a skipped check would look like a passing one
        pytest.fail("promtool not found: install Debian's prometheus (.ci/run does: apt-get install prometheus)")
    caption = rendered["scale-to-zero"].get("ScaledObject", f"{PREFIX}-caption")
    demand, wake = (t["metadata"]["query"] for t in caption["spec"]["triggers"])
    in_flight = "inspatio_rpc_in_flight{{namespace={ns!r},service={svc!r},pod={pod!r}}}"
    series = [
        # two caption replicas, then (from minute 3) none: scaled to zero, their series end
        {"series": in_flight.format(ns=NAMESPACE, svc=GRPC_SERVICE["caption"], pod="a"), "values": "0 1 3 stale"},
        {"series": in_flight.format(ns=NAMESPACE, svc=GRPC_SERVICE["caption"], pod="b"), "values": "0 0 1 stale"},
        # another release's caption and this release's generator must not count
        {"series": in_flight.format(ns="elsewhere", svc=GRPC_SERVICE["caption"], pod="c"), "values": "7x25"},
        {"series": in_flight.format(ns=NAMESPACE, svc=GRPC_SERVICE["generator"], pod="d"), "values": "5x25"},
        # the coordinator: one job submitted at minute 5, nobody watching after minute 6
        {"series": in_flight.format(ns=NAMESPACE, svc=GRPC_SERVICE["coordinator"], pod="e"), "values": "0 0 0 0 0 1 0x20"},
        {"series": f'inspatio_rpc_requests_total{{namespace="{NAMESPACE}",service="{GRPC_SERVICE["coordinator"]}",'
                   f'method="SubmitJob",code="OK",pod="e"}}', "values": "0 0 0 0 0 1 1x20"},
    ]  # fmt: skip
    cases = [(demand, "2m", 4), (demand, "4m", 0), (f"({wake}) > bool 0", "3m", 0), (f"({wake}) > bool 0", "5m", 1),
             (f"({wake}) > bool 0", "12m", 1), (f"({wake}) > bool 0", "25m", 0)]  # fmt: skip
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": at, "exp_samples": [{"labels": "{}", "value": value}]}
                             for expr, at, value in cases]}]}  # fmt: skip
    path = tmp_path / "queries_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
