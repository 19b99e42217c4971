#!/usr/bin/env bash
# Dependency audit: pip-audit on the locked production dependencies (uv.lock without the
# dev group), against PyPI's vulnerability data (OSV's when PyPI's JSON API is missing).
# Fails on any known vulnerability, and on any package it could not look up (--strict):
# pip-audit otherwise reports those as "skipped" and passes.
#
# Where no vulnerability data is reachable (a registry mirror without PyPI's JSON API, no
# route to api.osv.dev) the audit cannot run: it says so and passes, unless
# AUDIT_REQUIRED=1 (set it on CI runners that have the internet).
#
# A known vulnerability that does not apply (or has no fixed release yet): add its id to
# IGNORED below with the reason, e.g.  "GHSA-xxxx-xxxx-xxxx"  # not reachable: we never ...
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-python3 -m uv}
IGNORED=()

req=$(mktemp --suffix=.txt)
trap 'rm -f "$req"' EXIT
$UV export --frozen --no-dev --no-emit-project --no-hashes --format requirements-txt -q -o "$req"

service=$($UV run --frozen python - <<'PY'
import json, urllib.request
def reachable(request: urllib.request.Request) -> str:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return "ok" if response.status == 200 else f"HTTP {response.status}"
    except Exception as exc:  # HTTPError, DNS failure, timeout...
        return str(getattr(exc, "code", "") and f"HTTP {exc.code}" or exc)
# The per-release JSON API is what pip-audit reads (a mirror may serve only the project one).
pypi = reachable(urllib.request.Request("https://pypi.org/pypi/pip/24.0/json"))
query = json.dumps({"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "1.0"})
osv = reachable(urllib.request.Request(
    "https://api.osv.dev/v1/query", data=query.encode(), headers={"Content-Type": "application/json"}
))
print("pypi" if pypi == "ok" else "osv" if osv == "ok" else f"none: PyPI JSON API {pypi}; api.osv.dev {osv}")
PY
)

if [[ $service == none* ]]; then
  echo "dependency audit NOT RUN: no vulnerability data reachable (${service#none: })" >&2
  [[ ${AUDIT_REQUIRED:-0} == 1 ]] && exit 1
  exit 0
fi
echo "pip-audit: $(grep -c '==' "$req") locked packages against $service" >&2
ignore_args=()
for id in "${IGNORED[@]}"; do ignore_args+=(--ignore-vuln "$id"); done
$UV run --frozen pip-audit --strict --no-deps --disable-pip --progress-spinner off \
  -s "$service" -r "$req" "${ignore_args[@]}"
