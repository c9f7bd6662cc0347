#!/usr/bin/env bash
# The Debian packages the test suite runs for real (the Python ones come with `make install`):
# Prometheus and promtool for the metrics and alerting-rule tests. Installed only when missing.
set -euo pipefail
missing=()
for tool in prometheus promtool; do
  command -v "$tool" >/dev/null || missing+=(prometheus)
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian's prometheus (the metrics tests run a real one) ..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
