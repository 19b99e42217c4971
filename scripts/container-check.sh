#!/usr/bin/env bash
# Build the Dockerfile for real and check the image: /healthz, a chat answer from the embedded
# model with no network at all, the non-root user, the image size and the build time.
#
# Slow (minutes on a cold cache), so it stays out of `make test`: run `make container-check`
# (as root: it installs docker.io and debootstrap when missing and starts dockerd).
#
# No container registry is reachable here, so `FROM python:3.11-slim` is satisfied by a local
# stand-in of that name (Debian 12 minbase from the machine's apt source, Debian's python3.11
# and this machine's CA bundle), built once. Set BASE_STANDIN=0 to use a real registry.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-ai-helper-core:check}
NAME=ahc-container-check
BASE=python:3.11-slim
WORK=${WORK:-/tmp/ahc-container-check}
log() { printf '\n== %s\n' "$*" >&2; }

ensure_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_dockerd() {
  docker info >/dev/null 2>&1 && return
  log "starting dockerd"
  nohup dockerd >/var/log/dockerd-container-check.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  echo "dockerd did not start (see /var/log/dockerd-container-check.log)" >&2
  exit 1
}

debian_mirror() {
  # The first Debian URI of the machine's apt sources (deb822 or one-line format).
  local uri
  uri=$(grep -hoE -m1 '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk 'NR == 1 {print $2}')
  [[ -n $uri ]] || uri=$(grep -hoE -m1 '^deb +\S+' /etc/apt/sources.list 2>/dev/null |
    awk 'NR == 1 {print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_base() {
  [[ ${BASE_STANDIN:-1} == 1 ]] || return 0
  docker image inspect "$BASE" >/dev/null 2>&1 && return
  log "building the local stand-in for $BASE (debootstrap bookworm)"
  local root="$WORK/rootfs"
  rm -rf "$root" && mkdir -p "$root"
  debootstrap --variant=minbase bookworm "$root" "$(debian_mirror)" >"$WORK/debootstrap.log"
  tar -C "$root" -c . | docker import - ahc-debian:bookworm-minbase
  rm -rf "$root"
  mkdir -p "$WORK/base"
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/base/host-ca.crt"
  cat >"$WORK/base/Dockerfile" <<'EOF'
FROM ahc-debian:bookworm-minbase
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/python3 /usr/local/bin/python3 \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip
# apt's ca-certificates rewrites the system bundle: keep the machine's under its own name.
COPY host-ca.crt /usr/local/share/host-ca.crt
ENV SSL_CERT_FILE=/usr/local/share/host-ca.crt PIP_CERT=/usr/local/share/host-ca.crt \
    PIP_BREAK_SYSTEM_PACKAGES=1 LANG=C.UTF-8
EOF
  docker build --network host -q -t "$BASE" "$WORK/base" >/dev/null
}

in_container() { docker exec "$NAME" "$@"; }

http() {
  # An HTTP call from inside the container (it has no network of its own): python, no curl.
  in_container python -c '
import json, sys, urllib.request
url, token, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode() or None, method="POST" if body else "GET")
req.add_header("Content-Type", "application/json")
if token:
    req.add_header("Authorization", "Bearer " + token)
with urllib.request.urlopen(req, timeout=120) as resp:
    print(resp.status)
    print(resp.read().decode())
' "$@"
}

status_of() { printf '%s' "${1%%$'\n'*}"; }  # the first line (no pipe into head: SIGPIPE)

main() {
  [[ $(id -u) == 0 ]] || { echo "run as root (installs packages, starts dockerd)" >&2; exit 1; }
  mkdir -p "$WORK"
  ensure_tools
  ensure_dockerd
  ensure_base

  log "docker build --network host -t $IMAGE"
  local start end
  start=$(date +%s.%N)
  docker build --network host -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log" >&2; exit 1; }
  end=$(date +%s.%N)
  local build_seconds
  build_seconds=$(python3 -c "print(f'{$end - $start:.1f}')")

  log "docker run --network none $IMAGE"
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
  start=$(date +%s.%N)
  docker run -d --name "$NAME" --network none "$IMAGE" >/dev/null
  until [[ $(status_of "$(http http://127.0.0.1:8000/healthz "" "" 2>/dev/null)") == 200 ]]; do
    [[ $(docker inspect -f '{{.State.Running}}' "$NAME") == true ]] ||
      { docker logs "$NAME" | tail -n 40 >&2; exit 1; }
    sleep 0.5
  done
  end=$(date +%s.%N)
  local up_seconds
  up_seconds=$(python3 -c "print(f'{$end - $start:.1f}')")
  local health=starting
  for _ in $(seq 180); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$NAME")
    [[ $health == healthy ]] && break
    [[ $(docker inspect -f '{{.State.Running}}' "$NAME") == true ]] ||
      { docker logs "$NAME" | tail -n 40 >&2; exit 1; }
    sleep 1
  done
  end=$(date +%s.%N)
  [[ $health == healthy ]] || { docker logs "$NAME" | tail -n 40 >&2; echo "not healthy" >&2; exit 1; }
  local ready_seconds
  ready_seconds=$(python3 -c "print(f'{$end - $start:.1f}')")

  local healthz uid user token chat answer size
  healthz=$(status_of "$(http http://127.0.0.1:8000/healthz "" "")")
  [[ $healthz == 200 ]] || { echo "/healthz answered $healthz" >&2; exit 1; }
  uid=$(in_container id -u)
  user=$(in_container id -un)
  [[ $uid != 0 ]] || { echo "the service runs as root" >&2; exit 1; }
  token=$(in_container ai-helper-core token --org org-check --user alice)
  chat=$(http http://127.0.0.1:8000/api/chat/completions "$token" \
    '{"model": "local", "max_tokens": 24, "messages": [{"role": "user", "content": "What is the capital of France?"}]}')
  [[ $(status_of "$chat") == 200 ]] || { echo "chat failed: $chat" >&2; exit 1; }
  answer=$(tail -n +2 <<<"$chat" | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"].strip())')
  [[ -n $answer ]] || { echo "empty answer: $chat" >&2; exit 1; }
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")

  log "docker stop (SIGTERM, graceful)"
  start=$(date +%s.%N)
  docker stop -t 60 "$NAME" >/dev/null
  end=$(date +%s.%N)
  local stop_seconds exit_code
  stop_seconds=$(python3 -c "print(f'{$end - $start:.1f}')")
  exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
  [[ $exit_code == 0 ]] || { docker logs "$NAME" | tail -n 20 >&2; echo "exit $exit_code" >&2; exit 1; }

  printf '\n| check | result |\n|---|---|\n'
  printf '| build (docker build --network host) | %s s |\n' "$build_seconds"
  printf '| image size | %s MB |\n' "$(python3 -c "print(f'{$size / 1e6:.0f}')")"
  printf '| base image %s | %s MB |\n' "$BASE" \
    "$(python3 -c "print(f'{$(docker image inspect -f '{{.Size}}' "$BASE") / 1e6:.0f}')")"
  printf '| start to /healthz 200 (--network none) | %s s |\n' "$up_seconds"
  printf '| start to docker health `healthy` | %s s |\n' "$ready_seconds"
  printf '| /healthz | %s |\n' "$healthz"
  printf '| user | %s (uid %s) |\n' "$user" "$uid"
  printf '| chat with `local`, offline | %s |\n' "${answer//$'\n'/ }"
  printf '| docker stop (SIGTERM) | exit %s after %s s |\n' "$exit_code" "$stop_seconds"
}

main "$@"
