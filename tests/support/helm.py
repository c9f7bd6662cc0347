"""The real helm binary (tools/get_helm.py) and the objects `helm template` renders from the chart."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "inspatio-world"
RELEASE, NAMESPACE = "world", "inspatio"


def _load_get_helm():
    spec = importlib.util.spec_from_file_location("get_helm", REPO / "tools" / "get_helm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Helm:
    binary: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def template_args(self, values: Path | None = None, sets: tuple[str, ...] = ()) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        if values is not None:
            args += ["-f", str(values)]
        for item in sets:
            args += ["--set", item]
        return args

    def template(self, values: Path | None = None, sets: tuple[str, ...] = ()) -> "Rendered":
        return Rendered.parse(self.run(*self.template_args(values, sets)).stdout)


@dataclass
class Rendered:
    """The objects of one `helm template` run."""

    text: str
    objects: list[dict] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Rendered":
        return cls(text, [doc for doc in yaml.safe_load_all(text) if doc])

    def kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        matches = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
        return matches[0]

    def deployment(self, role: str) -> dict:
        return self.get("Deployment", f"{RELEASE}-inspatio-world-{role}")

    def pod_specs(self) -> list[tuple[str, dict]]:
        """(object name, pod spec) of every workload: Deployments, Jobs and bare Pods (helm test)."""
        specs = []
        for o in self.objects:
            if o["kind"] in ("Deployment", "Job"):
                specs.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
            elif o["kind"] == "Pod":
                specs.append((o["metadata"]["name"], o["spec"]))
        return specs


def make_helm(home: Path) -> Helm:
    """helm, installed once into .tools/bin, with its caches and config under `home` and no cluster."""
    binary = _load_get_helm().install(REPO / ".tools" / "bin")  # downloads once, then reuses
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data"), "KUBECONFIG": str(home / "no-kubeconfig")}  # fmt: skip
    return Helm(binary, env)
