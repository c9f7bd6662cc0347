"""Fixtures for the Helm chart tests: a real helm binary (tools/get_helm.py), rendering helpers.

No cluster is involved or pretended: the chart is linted, rendered with `helm template`, the
rendered objects are checked against the Kubernetes schemas offline (kubernetes-validate) and
inspected here.
"""

from __future__ import annotations

import pytest

from tests.support.helm import CHART, Helm, Rendered, make_helm

# The scenarios every rendering check runs over: the defaults and the chart's ci/ values files.
SCENARIOS = {
    "default": None,
    "external-s3": CHART / "ci" / "external-s3-values.yaml",
    "minio": CHART / "ci" / "minio-values.yaml",
    "keda": CHART / "ci" / "keda-values.yaml",
    "hpa": CHART / "ci" / "hpa-values.yaml",
    "scale-to-zero": CHART / "ci" / "scale-to-zero-values.yaml",
}


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return make_helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def rendered(helm: Helm) -> dict[str, Rendered]:
    """Every scenario rendered once per session."""
    return {name: helm.template(values) for name, values in SCENARIOS.items()}
