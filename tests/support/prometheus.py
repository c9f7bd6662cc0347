"""A real Prometheus (Debian's package) on 127.0.0.1 scraping given targets every second."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 20.0


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError("Debian's `prometheus` is not installed (.ci/run installs it: apt-get install prometheus)")
    return found


class Prometheus:
    """Scrapes `targets` (job name -> address), each sample labelled with `labels`, and evaluates the
    recording and alerting rules of `rule_files` every second."""

    def __init__(self, targets: dict[str, str], port: int, rule_files: tuple[Path, ...] = (),
                 labels: dict[str, str] | None = None) -> None:  # fmt: skip
        self.targets, self.port = targets, port
        self.rule_files, self.labels = tuple(rule_files), dict(labels or {})
        self.url = f"http://127.0.0.1:{port}"
        self._folder = Path(tempfile.mkdtemp(prefix="prometheus-"))
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "Prometheus":
        jobs = [{"job_name": name, "scrape_interval": "1s", "static_configs": [{"targets": [target], "labels": self.labels}]}
                for name, target in self.targets.items()]  # fmt: skip
        config = self._folder / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": jobs,
        }))  # fmt: skip
        self._process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={config}", f"--storage.tsdb.path={self._folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=(self._folder / "log.txt").open("wb"),
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1)
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"prometheus did not start: {(self._folder / 'log.txt').read_text()[-2000:]}")
                time.sleep(0.2)

    def query(self, expression: str, at: float | None = None) -> list[dict]:
        """The instant vector of `expression`, now or at the Unix time `at`."""
        params = {"query": expression} if at is None else {"query": expression, "time": repr(at)}
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params)
        answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_for(self, expression: str, predicate, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expression)
            if predicate(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(15)
        shutil.rmtree(self._folder, ignore_errors=True)
