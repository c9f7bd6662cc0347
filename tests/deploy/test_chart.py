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
# The security settings the services read (issue 11; fixed names, set by the chart from tls/auth).
TLS_SERVER_VARS = {"INSPATIO_TLS_CERT", "INSPATIO_TLS_KEY"}
TLS_CLIENT_VARS = {"INSPATIO_TLS_CA", "INSPATIO_TLS_CLIENT_CERT", "INSPATIO_TLS_CLIENT_KEY"}
SECURITY_VARS = TLS_SERVER_VARS | TLS_CLIENT_VARS | {"INSPATIO_TLS_CLIENT_CA", "INSPATIO_TLS_SERVER_NAME",
                                                     "INSPATIO_ALLOW_PLAINTEXT", "INSPATIO_TENANTS_FILE",
                                                     "INSPATIO_SERVICE_TOKEN_FILE"}  # fmt: skip


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
    validate_strictly(rendered, tmp_path)


def validate_strictly(rendered: dict[str, Rendered], tmp_path: Path) -> None:
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
        assert set(env) <= known | SECURITY_VARS | {"INSPATIO_ATTENTION"}, set(env) - known - SECURITY_VARS
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
    secrets = [s for s in result.kind("Secret") if s["metadata"]["name"] != f"{PREFIX}-service-token"]  # S3 keys only
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
    (secret,) = [s for s in result.kind("Secret") if s["metadata"]["name"] == f"{PREFIX}-s3"]
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


# ----------------------------------------------------------------------------------- TLS, tokens, tenants

TLS_AUTH_VALUES = CHART / "ci" / "tls-auth-values.yaml"
# (values file, --set items) of the security scenarios; the ci/ scenarios above all run without TLS
SECURED = {
    # TLS, mutual, the coordinator's own client certificate, tenants, an existing service token
    "tls-auth": (TLS_AUTH_VALUES, ()),
    # one certificate for everything (mutual by default), a generated service token, no tenants
    "tls-one-cert": (None, ("tls.enabled=true", "tls.secretName=world-tls")),
    # server TLS only, one name for all certificates, no service token
    "tls-one-way": (None, ("tls.enabled=true", "tls.secretName=world-tls", "tls.mutual=false",
                           "tls.serverName=inspatio.internal", "auth.serviceToken.enabled=false")),  # fmt: skip
    # tenants without TLS
    "plaintext-auth": (TLS_AUTH_VALUES, ("tls.enabled=false",)),
}
MOUNT_MODE = 0o440  # read-only for the services' user (root owns the files, fsGroup 10001 the group)


@pytest.fixture(scope="module")
def secured(helm: Helm) -> dict[str, Rendered]:
    return {name: helm.template(values, sets) for name, (values, sets) in SECURED.items()}


def tls_on(scenario: str) -> bool:
    return scenario.startswith("tls")


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def mounted_file(deployment: dict, path: str) -> tuple[dict, dict]:
    """The (volumeMount, volume) a file path of the container lies in."""
    mounts = [m for m in container(deployment)["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, (path, mounts)
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mounts[0]["name"])
    return mounts[0], volume


def file_source(deployment: dict, path: str) -> tuple[str, str, str]:
    """(kind, object name, key) a mounted file comes from: ("secret", "world-tls", "tls.crt")."""
    mount, volume = mounted_file(deployment, path)
    assert mount["readOnly"] is True, mount
    name = path[len(mount["mountPath"].rstrip("/")) + 1:]
    kind = "secret" if "secret" in volume else "configMap"
    source = volume[kind]
    assert source["defaultMode"] == MOUNT_MODE, volume
    items = {i["path"]: i["key"] for i in source.get("items", [])}
    key = items.get(name, name) if "items" not in source or name in items else None
    assert key is not None, f"{path} is not among the items of volume {volume['name']}"
    return kind, source.get("secretName", source.get("name")), key


def test_tls_auth_values_pass_lint(helm: Helm) -> None:
    out = helm.run("lint", "--strict", str(CHART), "-f", str(TLS_AUTH_VALUES)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_secured_objects_pass_kubernetes_schemas_strictly(secured: dict[str, Rendered], tmp_path: Path) -> None:
    validate_strictly(secured, tmp_path)


def test_plaintext_is_allowed_exactly_when_tls_is_off(rendered: dict[str, Rendered], secured: dict[str, Rendered]) -> None:
    for scenario, result in {**rendered, **secured}.items():
        for role in ROLES:
            env = env_of(result.deployment(role))
            if tls_on(scenario):
                assert "INSPATIO_ALLOW_PLAINTEXT" not in env, (scenario, role)
                assert TLS_SERVER_VARS <= set(env), (scenario, role)
            else:
                assert env["INSPATIO_ALLOW_PLAINTEXT"]["value"] == "1", (scenario, role)
                assert not set(env) & (TLS_SERVER_VARS | TLS_CLIENT_VARS | {"INSPATIO_TLS_CLIENT_CA"}), (scenario, role)
                assert not [v for v in pod_spec(result.deployment(role))["volumes"] if v["name"].startswith("tls")]


@pytest.mark.parametrize("scenario", [s for s in SECURED if tls_on(s)])
def test_tls_certificates_are_mounted_where_they_are_used(secured: dict[str, Rendered], scenario: str) -> None:
    result = secured[scenario]
    server_secret = "inspatio-world-tls" if scenario == "tls-auth" else "world-tls"
    mutual = scenario != "tls-one-way"
    client_secret = "inspatio-world-coordinator-client" if scenario == "tls-auth" else server_secret
    for role in ROLES:
        deployment = result.deployment(role)
        env = {name: e["value"] for name, e in env_of(deployment).items() if name.startswith("INSPATIO_TLS_")}
        expected = set(TLS_SERVER_VARS)
        if role == "coordinator":
            expected |= {"INSPATIO_TLS_CA"} | ({"INSPATIO_TLS_CLIENT_CERT", "INSPATIO_TLS_CLIENT_KEY"} if mutual else set())
            expected |= {"INSPATIO_TLS_SERVER_NAME"} if scenario == "tls-one-way" else set()
        elif mutual:
            expected |= {"INSPATIO_TLS_CLIENT_CA"}  # only the coordinator's certificate gets in
        assert set(env) == expected, (role, set(env) ^ expected)
        assert file_source(deployment, env["INSPATIO_TLS_CERT"]) == ("secret", server_secret, "tls.crt")
        assert file_source(deployment, env["INSPATIO_TLS_KEY"]) == ("secret", server_secret, "tls.key")
        if "INSPATIO_TLS_CLIENT_CA" in env:
            assert file_source(deployment, env["INSPATIO_TLS_CLIENT_CA"]) == ("secret", server_secret, "ca.crt")
        if role == "coordinator":
            assert file_source(deployment, env["INSPATIO_TLS_CA"]) == ("secret", server_secret, "ca.crt")
            if mutual:
                assert file_source(deployment, env["INSPATIO_TLS_CLIENT_CERT"]) == ("secret", client_secret, "tls.crt")
                assert file_source(deployment, env["INSPATIO_TLS_CLIENT_KEY"]) == ("secret", client_secret, "tls.key")
        else:  # a stage never holds the coordinator's client identity
            secrets = {v["secret"]["secretName"] for v in pod_spec(deployment)["volumes"] if "secret" in v}
            assert "inspatio-world-coordinator-client" not in secrets
    coordinator = result.deployment("coordinator")
    if scenario == "tls-one-way":
        assert env_value(coordinator, "INSPATIO_TLS_SERVER_NAME") == "inspatio.internal"
    # the stage addresses stay the Service names the certificate holds
    assert env_value(coordinator, envvars.CAPTION_ADDRESS.name).startswith(f"{PREFIX}-caption.{NAMESPACE}.svc.cluster.local:")
    # helm test: the client trusts the CA and gets nothing else from the Secret
    (pod,) = result.kind("Pod")
    (c,) = pod["spec"]["containers"]
    ca = next(e["value"] for e in c["env"] if e["name"] == "INSPATIO_TLS_CA")
    (volume,) = [v for v in pod["spec"]["volumes"] if v.get("secret", {}).get("secretName") == server_secret]
    assert volume["secret"]["secretName"] == server_secret and volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert ca == next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == volume["name"]) + "/ca.crt"


@pytest.mark.parametrize("scenario", [s for s in SECURED if tls_on(s)])
def test_probes_with_tls_ask_grpc_health_over_tls(secured: dict[str, Rendered], scenario: str) -> None:
    """The kubelet's grpc probe cannot do TLS: each probe is the pod asking itself over TLS."""
    for role in ROLES:
        deployment = secured[scenario].deployment(role)
        c = container(deployment)
        tls_dir = env_value(deployment, "INSPATIO_TLS_CERT").rsplit("/", 1)[0]
        name = "inspatio.internal" if scenario == "tls-one-way" else f"{PREFIX}-{role}.{NAMESPACE}.svc.cluster.local"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(c[probe]) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"exec"}, (role, probe)
            python, flag, script, folder, address, server_name, timeout = c[probe]["exec"]["command"]
            assert (python, flag) == ("python", "-c") and "grpc_health.v1" in script
            assert (folder, server_name) == (tls_dir, name)
            assert address == f"127.0.0.1:{named_port(deployment, 'grpc')}"
            assert 0 < float(timeout) < c[probe]["timeoutSeconds"]  # the RPC gives up before the kubelet does
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= (60 if role == "coordinator" else 600)


def _certificates(folder: Path, name: str) -> None:
    """A CA and one certificate for `name` (server and client auth, as deploy/README.md's Certificate),
    written like cert-manager's Secret: ca.crt, tls.crt, tls.key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))  # fmt: skip
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(2).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    folder.mkdir()
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))  # fmt: skip


def test_the_tls_probe_works_against_a_real_mutual_tls_server(secured: dict[str, Rendered], tmp_path: Path) -> None:
    """The rendered probe command, run against a gRPC server that requires client certificates as a
    stage does: exit 0 while SERVING, non-zero while NOT_SERVING or when the server is gone."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    deployment = secured["tls-one-cert"].deployment("caption")
    command = container(deployment)["readinessProbe"]["exec"]["command"]
    name = command[5]
    folder = tmp_path / "tls"
    _certificates(folder, name)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([((folder / "tls.key").read_bytes(), (folder / "tls.crt").read_bytes())],
                                              root_certificates=(folder / "ca.crt").read_bytes(),
                                              require_client_auth=True)  # fmt: skip
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()

    def probe() -> int:
        argv = [sys.executable, *command[1:3], str(folder), f"127.0.0.1:{port}", *command[5:]]
        return subprocess.run(argv, capture_output=True, timeout=30).returncode

    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # still loading its models
        assert probe() != 0
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert probe() == 0
        # without a client certificate the same server refuses the call: the probe's certificate counts
        channel = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials((folder / "ca.crt").read_bytes()),
                                      options=[("grpc.ssl_target_name_override", name)])  # fmt: skip
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        channel.close()
    finally:
        server.stop(0)
    assert probe() != 0


def test_tenants_configmap_holds_the_values_for_the_coordinator_only(secured: dict[str, Rendered], helm: Helm) -> None:
    import json

    values = yaml.safe_load(TLS_AUTH_VALUES.read_text())
    for scenario in ("tls-auth", "plaintext-auth"):
        result = secured[scenario]
        coordinator = result.deployment("coordinator")
        path = env_value(coordinator, "INSPATIO_TENANTS_FILE")
        kind, name, key = file_source(coordinator, path)
        assert (kind, name, key) == ("configMap", f"{PREFIX}-tenants", "tenants.json")
        config = result.get("ConfigMap", name)
        assert json.loads(config["data"][key]) == {"tenants": values["auth"]["tenants"]}
        for role in STAGES:
            deployment = result.deployment(role)
            assert "INSPATIO_TENANTS_FILE" not in env_of(deployment)
            assert not [v for v in pod_spec(deployment)["volumes"] if v.get("configMap", {}).get("name") == name]
    # a changed tenant list rolls the coordinator, and only it
    before = secured["tls-auth"]
    after = helm.template(TLS_AUTH_VALUES, ("auth.tenants[1].max_concurrent_jobs=2",))
    checksum = lambda r, role: r.deployment(role)["spec"]["template"]["metadata"]["annotations"].get("checksum/tenants")  # noqa: E731
    assert checksum(before, "coordinator") and checksum(after, "coordinator")
    assert checksum(before, "coordinator") != checksum(after, "coordinator")
    for role in STAGES:
        assert before.deployment(role)["spec"]["template"] == after.deployment(role)["spec"]["template"], role
    # without auth: no tenants file anywhere
    default = secured["tls-one-cert"]
    assert not [c for c in default.kind("ConfigMap") if c["metadata"]["name"].endswith("-tenants")]
    assert not any("INSPATIO_TENANTS_FILE" in env_of(default.deployment(r)) for r in ROLES)


def test_service_token_from_a_generated_or_an_existing_secret(secured: dict[str, Rendered], rendered: dict[str, Rendered]) -> None:
    import base64

    cases = {"tls-one-cert": (f"{PREFIX}-service-token", "token"), "tls-auth": ("inspatio-world-service-token", "service-token"),
             "default": (f"{PREFIX}-service-token", "token")}  # fmt: skip
    for scenario, (secret_name, key) in cases.items():
        result = secured.get(scenario) or rendered[scenario]
        for role in ROLES:  # the coordinator sends it, every stage requires it
            deployment = result.deployment(role)
            assert file_source(deployment, env_value(deployment, "INSPATIO_SERVICE_TOKEN_FILE")) == ("secret", secret_name, key)
        generated = [s for s in result.kind("Secret") if s["metadata"]["name"] == f"{PREFIX}-service-token"]
        if scenario == "tls-auth":
            assert not generated  # made beforehand: the chart leaves it alone
        else:
            (secret,) = generated
            token = base64.b64decode(secret["data"]["token"]).decode()
            assert re.fullmatch(r"[A-Za-z0-9]{48}", token), token
    off = secured["tls-one-way"]
    assert not [s for s in off.kind("Secret") if "service-token" in s["metadata"]["name"]]
    for role in ROLES:
        assert "INSPATIO_SERVICE_TOKEN_FILE" not in env_of(off.deployment(role))
        assert "service-token" not in {v["name"] for v in pod_spec(off.deployment(role))["volumes"]}


def _values_file(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


GOOD_TENANT = {"name": "acme", "token_sha256": ["0" * 64], "input_prefixes": ["s3://media/acme/"], "max_concurrent_jobs": 1}


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ({"token_sha256": ["ABCDEF" + "0" * 58]}, "at '/auth/tenants/0/token_sha256/0': 'ABCDEF"),  # upper case
        ({"token_sha256": ["0" * 63]}, "at '/auth/tenants/0/token_sha256/0'"),  # too short
        ({"token_sha256": []}, "at '/auth/tenants/0/token_sha256': minItems"),
        ({"token_sha256": "0" * 64}, "at '/auth/tenants/0/token_sha256': got string, want array"),
        ({"name": "-acme"}, "at '/auth/tenants/0/name': '-acme' does not match pattern"),
        ({"name": "acme corp"}, "at '/auth/tenants/0/name'"),
        ({"name": "a" * 129}, "at '/auth/tenants/0/name': maxLength"),
        ({"max_concurrent_jobs": -1}, "at '/auth/tenants/0/max_concurrent_jobs': minimum: got -1, want 1"),
        ({"max_upload_bytes": 0}, "at '/auth/tenants/0/max_upload_bytes': minimum: got 0, want 1"),
        ({"max_output_frames": 2.5}, "at '/auth/tenants/0/max_output_frames': got number, want integer"),
        ({"max_sessions": -3}, "at '/auth/tenants/0/max_sessions': minimum: got -3, want 1"),
        ({"input_prefixes": ["/data/acme/"]}, "at '/auth/tenants/0/input_prefixes/0'"),
        ({"token": "hunter2"}, "at '/auth/tenants/0': additional properties 'token' not allowed"),  # no secrets in values
    ],
)
def test_values_schema_rejects_bad_tenants(helm: Helm, tmp_path: Path, tenant: dict, message: str) -> None:
    values = _values_file(tmp_path, {"auth": {"enabled": True, "tenants": [{**GOOD_TENANT, **tenant}]}})
    done = helm.run(*helm.template_args(values), check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def test_values_schema_rejects_bad_tls_and_token_settings(helm: Helm) -> None:
    for setting, message in [("tls.enabled=yes", "at '/tls/enabled': got string, want boolean"),
                             ("tls.secret=x", "at '/tls': additional properties 'secret' not allowed"),
                             ("tls.secretName=My_Secret", "at '/tls/secretName'"),
                             ("auth.serviceToken.value=abc", "at '/auth/serviceToken': additional properties 'value' not allowed")]:  # fmt: skip
        done = helm.run(*helm.template_args(sets=(setting,)), check=False)
        assert done.returncode != 0 and message in done.stderr, (setting, done.stderr)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls": {"enabled": True}}, "tls.enabled needs tls.secretName: the name of a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt"),
        ({"auth": {"enabled": True}}, "auth.enabled needs at least one tenant in auth.tenants: make a token with `inspatio token new`"),
        ({"auth": {"enabled": True, "tenants": [GOOD_TENANT, {**GOOD_TENANT, "token_sha256": ["1" * 64]}]}},
         'auth.tenants: the name "acme" is used twice'),
        ({"auth": {"enabled": True, "tenants": [GOOD_TENANT, {**GOOD_TENANT, "name": "globex"}]}},
         f'auth.tenants: token digest {"0" * 64} belongs to both "acme" and "globex"'),
    ],
)
def test_inconsistent_security_settings_are_refused_clearly(helm: Helm, tmp_path: Path, values: dict, message: str) -> None:
    done = helm.run(*helm.template_args(_values_file(tmp_path, values)), check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_notes_warn_about_plaintext_and_unauthenticated_access(helm: Helm) -> None:
    def notes(*args: str) -> str:
        done = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *args)
        return done.stdout.split("NOTES:", 1)[1]

    plain = notes()
    assert "WARNING: TLS is off" in plain and "PLAINTEXT" in plain and "INSPATIO_ALLOW_PLAINTEXT=1" in plain
    assert "WARNING: client authentication is off" in plain
    secure = notes("-f", str(TLS_AUTH_VALUES))
    assert "WARNING" not in secure and "PLAINTEXT" not in secure
    assert "trust the CA in\nSecret inspatio-world-tls" in secure and "2 tenant(s)" in secure
    open_stages = notes("--set", "auth.serviceToken.enabled=false")
    assert "the stages accept any caller" in open_stages


def test_helm_test_with_auth_runs_only_with_a_tenant_token(helm: Helm) -> None:
    """With auth on, the test pod would be refused without a token: it runs only when tests.tokenSecret
    names one, which it mounts as INSPATIO_TOKEN_FILE; without it there is no pod, and NOTES says why."""
    assert not helm.template(TLS_AUTH_VALUES, ("tests.tokenSecret=",)).kind("Pod")
    done = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "-f", str(TLS_AUTH_VALUES),
                    "--set", "tests.tokenSecret=")  # fmt: skip
    assert "set tests.tokenSecret" in done.stdout.split("NOTES:", 1)[1]
    (pod,) = helm.template(TLS_AUTH_VALUES, ("tests.tokenSecret=acme-token",)).kind("Pod")
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert env["INSPATIO_TOKEN_FILE"] == f"{mounts['token']['mountPath']}/token" and mounts["token"]["readOnly"]
    assert volumes["token"]["secret"] == {"secretName": "acme-token", "defaultMode": MOUNT_MODE, "items": [{"key": "token", "path": "token"}]}
    assert "INSPATIO_TOKEN_FILE" not in {e["name"] for e in helm.template(None).kind("Pod")[0]["spec"]["containers"][0]["env"]}


# ----------------------------------------------------------------------------------- v1.5 generator pool

V15_VALUES = CHART / "ci" / "generator-v1-5-values.yaml"
V15 = "generator-v1-5"  # the pool's role: object names <fullname>-generator-v1-5, component label
V15_NAME = f"{PREFIX}-{V15}"


@pytest.fixture(scope="module")
def v15(helm: Helm) -> dict[str, Rendered]:
    """Both generator pools, autoscaled by KEDA (the ci file) or by HPAs, and with TLS and tenants."""
    return {"v15-keda": helm.template(V15_VALUES),
            "v15-hpa": helm.template(V15_VALUES, ("autoscaling.engine=hpa",)),
            "v15-tls-auth": helm.template(TLS_AUTH_VALUES, ("generatorV15.enabled=true",))}  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_v1_5_pool_unless_enabled(rendered: dict[str, Rendered], scenario: str) -> None:
    result = rendered[scenario]
    assert V15 not in result.text
    assert not [o for o in result.objects if "v1-5" in o["metadata"]["name"]]
    coordinator = env_of(result.deployment("coordinator"))
    assert envvars.GENERATOR_V1_5_ADDRESS.name not in coordinator  # unset: the coordinator refuses v1_5 jobs
    assert env_value(result.deployment("generator"), envvars.MODEL_VERSION.name) == "v1"


def test_v1_5_values_pass_lint(helm: Helm) -> None:
    out = helm.run("lint", "--strict", str(CHART), "-f", str(V15_VALUES)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_v1_5_objects_pass_kubernetes_schemas_strictly(v15: dict[str, Rendered], tmp_path: Path) -> None:
    validate_strictly(v15, tmp_path)


@pytest.mark.parametrize("scenario", ["v15-keda", "v15-hpa", "v15-tls-auth"])
def test_v1_5_pool_runs_the_generator_with_model_version_v1_5(v15: dict[str, Rendered], scenario: str) -> None:
    result = v15[scenario]
    pool, v1 = result.deployment(V15), result.deployment("generator")
    env, env_v1 = env_of(pool), env_of(v1)
    assert env[envvars.MODEL_VERSION.name]["value"] == "v1_5"
    assert env_v1[envvars.MODEL_VERSION.name]["value"] == "v1"
    known = {v.name for v in envvars.ALL} | {"HOME"}
    assert set(env) <= known | SECURITY_VARS, set(env) - known - SECURITY_VARS
    # the generator's program, image, ports, weights and compile cache; only the version differs
    assert container(pool)["args"] == ["python", "-m", "services.generator.main"]
    assert container(pool)["image"] == container(v1)["image"]
    assert container(pool)["image"].endswith("inspatio-world/generator:0.1.0")
    assert set(env) == set(env_v1)
    assert {k: e for k, e in env.items() if k != envvars.MODEL_VERSION.name} == {
        k: e for k, e in env_v1.items() if k != envvars.MODEL_VERSION.name}
    assert container(pool)["ports"] == container(v1)["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # the same probes; with TLS the pool's verifies its own Service's name
        expected = yaml.safe_dump(container(v1)[probe]).replace(f"{PREFIX}-generator.", f"{V15_NAME}.")
        assert yaml.safe_dump(container(pool)[probe]) == expected, probe
    if scenario == "v15-tls-auth":
        assert f"{V15_NAME}.{NAMESPACE}.svc.cluster.local" in container(pool)["startupProbe"]["exec"]["command"]
    assert container(pool)["volumeMounts"] == container(v1)["volumeMounts"]
    weights = next(m for m in container(pool)["volumeMounts"] if m["name"] == "weights")
    assert weights["readOnly"] is True and env[envvars.WEIGHTS.name]["value"] == weights["mountPath"]
    claim = next(v for v in pod_spec(pool)["volumes"] if v["name"] == "weights")["persistentVolumeClaim"]
    assert claim == next(v for v in pod_spec(v1)["volumes"] if v["name"] == "weights")["persistentVolumeClaim"]
    assert container(pool)["resources"]["limits"][GPU] == container(pool)["resources"]["requests"][GPU] == 1
    # its own pods: neither pool's selector picks the other's pods
    assert not selects(pool["spec"]["selector"], pod_labels(v1))
    assert not selects(v1["spec"]["selector"], pod_labels(pool))


def test_v1_5_pool_scheduling_is_its_own(v15: dict[str, Rendered], helm: Helm) -> None:
    pool, v1 = (pod_spec(v15["v15-keda"].deployment(r)) for r in (V15, "generator"))
    assert pool["nodeSelector"] == {"inspatio.io/pool": "generator-v1-5"} != v1["nodeSelector"]
    assert {"key": "inspatio.io/pool", "operator": "Equal", "value": "generator-v1-5", "effect": "NoSchedule"} in pool["tolerations"]
    # without overrides: the generator's defaults; resources and replicas overridable
    result = helm.template(sets=("generatorV15.enabled=true", "generatorV15.replicas=3",
                                 "generatorV15.resources.limits.memory=64Gi"))  # fmt: skip
    pool, v1 = result.deployment(V15), result.deployment("generator")
    assert pod_spec(pool)["nodeSelector"] == pod_spec(v1)["nodeSelector"]
    assert pod_spec(pool)["tolerations"] == pod_spec(v1)["tolerations"]
    assert pool["spec"]["replicas"] == 3 and v1["spec"]["replicas"] == 1
    assert container(pool)["resources"]["limits"]["memory"] == "64Gi"
    assert container(v1)["resources"]["limits"]["memory"] == "48Gi"


@pytest.mark.parametrize("scenario", ["v15-keda", "v15-hpa", "v15-tls-auth"])
def test_coordinator_sends_v1_5_jobs_to_the_v1_5_service(v15: dict[str, Rendered], scenario: str) -> None:
    result = v15[scenario]
    service = result.get("Service", V15_NAME)
    pool = result.deployment(V15)
    assert service["spec"]["clusterIP"] == "None"  # headless, like the other stages: round_robin over replicas
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(pool))
    others = [d for d in result.kind("Deployment") if d is not pool]
    assert not any(selects({"matchLabels": service["spec"]["selector"]}, pod_labels(d)) for d in others)
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["targetPort"] == "grpc" and grpc["port"] == named_port(pool, "grpc")
    coordinator = result.deployment("coordinator")
    host = f"{V15_NAME}.{NAMESPACE}.svc.cluster.local"
    assert env_value(coordinator, envvars.GENERATOR_V1_5_ADDRESS.name) == f"{host}:{grpc['port']}"
    assert env_value(coordinator, envvars.GENERATOR_ADDRESS.name) == (
        f"{PREFIX}-generator.{NAMESPACE}.svc.cluster.local:{DEFAULT_PORTS['generator'][0]}")


@pytest.mark.parametrize("scenario", ["v15-keda", "v15-tls-auth"])
def test_v1_5_pool_has_a_disruption_budget_and_a_network_policy(v15: dict[str, Rendered], scenario: str) -> None:
    result = v15[scenario]
    pool = result.deployment(V15)
    pdbs = [p for p in result.kind("PodDisruptionBudget") if selects(p["spec"]["selector"], pod_labels(pool))]
    assert [p["metadata"]["name"] for p in pdbs] == [V15_NAME]
    assert pdbs[0]["spec"]["maxUnavailable"] == 1
    covering = [p for p in result.kind("NetworkPolicy") if selects(p["spec"]["podSelector"], pod_labels(pool))]
    assert [p["metadata"]["name"] for p in covering] == [V15_NAME]
    (grpc_rule,) = _rules_for_port(covering[0], "grpc")
    (peer,) = grpc_rule["from"]
    assert selects(peer["podSelector"], pod_labels(result.deployment("coordinator")))
    assert not selects(peer["podSelector"], pod_labels(result.deployment("generator")))
    assert not selects(peer["podSelector"], pod_labels(pool))


def test_v1_5_pool_is_autoscaled_on_its_own_demand(v15: dict[str, Rendered]) -> None:
    keda = v15["v15-keda"]
    assert "replicas" not in keda.deployment(V15)["spec"]  # the autoscaler owns the count
    obj = keda.get("ScaledObject", V15_NAME)
    assert obj["spec"]["scaleTargetRef"]["name"] == V15_NAME
    assert (obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"]) == (1, 3)
    (trigger,) = obj["spec"]["triggers"]
    assert trigger["metadata"]["threshold"] == "1"
    query = trigger["metadata"]["query"]
    assert f'service="{GRPC_SERVICE["generator"]}"' in query and f'pod=~"{V15_NAME}-.*"' in query
    (v1_trigger,) = keda.get("ScaledObject", f"{PREFIX}-generator")["spec"]["triggers"]
    assert f'pod!~"{V15_NAME}-.*"' in v1_trigger["metadata"]["query"]
    hpa = v15["v15-hpa"].get("HorizontalPodAutoscaler", V15_NAME)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": V15_NAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "inspatio_rpc_in_flight"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}


def test_v1_5_keda_queries_split_demand_between_the_pools(v15: dict[str, Rendered], tmp_path: Path) -> None:
    """promtool: each pool's demand query counts its own replicas' in-flight requests, not the other's."""
    promtool = shutil.which("promtool")
    if promtool is None:  # a skipped check would look like a passing one
        pytest.fail("promtool not found: install Debian's prometheus (.ci/run does: apt-get install prometheus)")
    keda = v15["v15-keda"]
    (q15,) = (t["metadata"]["query"] for t in keda.get("ScaledObject", V15_NAME)["spec"]["triggers"])
    (q1,) = (t["metadata"]["query"] for t in keda.get("ScaledObject", f"{PREFIX}-generator")["spec"]["triggers"])
    in_flight = "inspatio_rpc_in_flight{{namespace={ns!r},service={svc!r},pod={pod!r}}}"
    svc = GRPC_SERVICE["generator"]
    series = [{"series": in_flight.format(ns=NAMESPACE, svc=svc, pod=f"{PREFIX}-generator-5d9c-abcde"), "values": "3x5"},
              {"series": in_flight.format(ns=NAMESPACE, svc=svc, pod=f"{PREFIX}-generator-5d9c-fghij"), "values": "1x5"},
              {"series": in_flight.format(ns=NAMESPACE, svc=svc, pod=f"{V15_NAME}-7f8b-klmno"), "values": "5x5"},
              {"series": in_flight.format(ns="elsewhere", svc=svc, pod=f"{V15_NAME}-7f8b-pqrst"), "values": "9x5"}]  # fmt: skip
    cases = [(q1, 4), (q15, 5)]
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": value}]}
                             for expr, value in cases]}]}  # fmt: skip
    path = tmp_path / "v15_queries_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_v1_5_pool_is_scraped_by_the_service_monitor(v15: dict[str, Rendered]) -> None:
    result = v15["v15-keda"]
    (monitor,) = result.kind("ServiceMonitor")
    service = result.get("Service", V15_NAME)
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert any(p["name"] == "metrics" for p in service["spec"]["ports"])


def test_v1_5_names_fit_kubernetes_limits_for_the_longest_release_name(helm: Helm) -> None:
    args = helm.template_args(V15_VALUES, ("autoscaling.engine=hpa",))
    args[1] = "r" * 53
    result = Rendered.parse(helm.run(*args).stdout)
    assert [o for o in result.objects if o["metadata"]["name"].endswith("-generator-v1-5")]
    for obj in result.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert all(len(str(v)) <= 63 for v in obj["metadata"]["labels"].values()), obj["metadata"]["labels"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("generatorV15.enabled=yes",), "at '/generatorV15/enabled': got string, want boolean"),
        (("generatorV15.gpus=2",), "at '/generatorV15/gpus': maximum: got 2, want 1"),
        (("generatorV15.replica=1",), "at '/generatorV15': additional properties 'replica' not allowed"),
        (("generatorV15.enabled=true", "generatorV15.terminationGracePeriodSeconds=60"),
         "generatorV15.terminationGracePeriodSeconds (60) must exceed"),
        (("generatorV15.enabled=true", "autoscaling.enabled=true", "autoscaling.engine=hpa",
          "generatorV15.autoscaling.minReplicas=0"), "generatorV15.autoscaling.minReplicas is 0"),
    ],
)
def test_bad_v1_5_values_are_refused(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    done = helm.run(*helm.template_args(sets=sets), check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr
