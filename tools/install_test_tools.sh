#!/usr/bin/env bash
# The Debian packages the test suite runs for real (the Python ones come with `make install`):
# Prometheus and promtool for the metrics and alerting-rule tests; Chromium and its chromedriver for the
# viewer's browser test (tests/browser, driven by Selenium: no browser is downloaded). Installed only when missing.
set -euo pipefail
packages=()
for tool in prometheus promtool; do
  command -v "$tool" >/dev/null || { packages+=(prometheus); break; }
done
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
if ((${#packages[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian's ${packages[*]} (the metrics and viewer tests run real ones) ..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
