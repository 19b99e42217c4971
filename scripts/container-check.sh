#!/usr/bin/env bash
# Build the Dockerfile for real and check the image: /healthz, a chat answer from the embedded
# model with no network at all, the non-root user, the image size, the build time, a graceful
# stop; then docker-compose.yml: up, a chat, an upload the worker ingests, stop.
#
# Slow (minutes on a cold cache), so it stays out of `make test`: run `make container-check`
# (as root: it installs docker.io and debootstrap when missing and starts dockerd).
#
# No container registry is reachable here, so `FROM python:3.11-slim` is satisfied by a local
# stand-in of that name (Debian 12 minbase from the machine's apt source, Debian's python3.11
# and this machine's CA bundle), built once; likewise postgres:16 and redis:7 for the compose
# file (Debian's PostgreSQL 15 and Redis). Set BASE_STANDIN=0 to use a real registry.
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

ensure_backing_standins() {
  # Stand-ins named postgres:16 and redis:7 (Debian's PostgreSQL 15 and Redis 7 on the same
  # minbase root), for docker-compose.yml's backing services when no registry answers.
  [[ ${BASE_STANDIN:-1} == 1 ]] || return 0
  mkdir -p "$WORK/postgres" "$WORK/redis"
  if ! docker image inspect postgres:16 >/dev/null 2>&1; then
    log "building the local stand-in for postgres:16"
    cat >"$WORK/postgres/entrypoint.sh" <<'EOF2'
#!/bin/sh
# As the official image: POSTGRES_USER/PASSWORD/DB create the cluster on first start.
set -e
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=/usr/lib/postgresql/15/bin
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql
  exec su postgres -s /bin/sh -c "POSTGRES_USER='$POSTGRES_USER' POSTGRES_PASSWORD='$POSTGRES_PASSWORD' POSTGRES_DB='$POSTGRES_DB' PGDATA='$PGDATA' $0"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "$POSTGRES_PASSWORD" >/tmp/pwfile
  $BIN/initdb -E UTF8 --locale=C.UTF-8 -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile -A scram-sha-256 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  $BIN/pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  PGPASSWORD=$POSTGRES_PASSWORD psql -h /run/postgresql -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
  $BIN/pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec $BIN/postgres -D "$PGDATA" -c listen_addresses='*'
EOF2
    cat >"$WORK/postgres/Dockerfile" <<'EOF2'
FROM ahc-debian:bookworm-minbase
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* && (pg_dropcluster 15 main || true)
ENV PGPORT=5432
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
RUN chmod +x /usr/local/bin/entrypoint.sh
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
EOF2
    docker build --network host -q -t postgres:16 "$WORK/postgres" >/dev/null
  fi
  if ! docker image inspect redis:7 >/dev/null 2>&1; then
    log "building the local stand-in for redis:7"
    cat >"$WORK/redis/Dockerfile" <<'EOF2'
FROM ahc-debian:bookworm-minbase
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* && mkdir -p /data
WORKDIR /data
# As the official image: reachable from the other containers.
ENTRYPOINT ["sh", "-c", "exec \"$@\" --protected-mode no", "--"]
EOF2
    docker build --network host -q -t redis:7 "$WORK/redis" >/dev/null
  fi
}

check_compose() {
  # docker-compose.yml for real: up, chat, an upload the worker ingests, stop (exit codes).
  local compose
  if docker compose version >/dev/null 2>&1; then compose=(docker compose)
  else
    command -v docker-compose >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
    compose=(docker-compose)
  fi
  compose+=(-p ahccheck -f "$ROOT/docker-compose.yml")
  ensure_backing_standins
  docker tag "$IMAGE" ai-helper-core:latest
  log "${compose[*]} up -d"
  "${compose[@]}" down -v >/dev/null 2>&1 || true
  trap '"${compose[@]}" down -v >/dev/null 2>&1 || true; docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
  local start end
  start=$(date +%s.%N)
  "${compose[@]}" up -d --no-build >"$WORK/compose.log" 2>&1 ||
    { cat "$WORK/compose.log" >&2; "${compose[@]}" logs --tail 20 >&2; exit 1; }
  local api
  api=$("${compose[@]}" ps -q api)
  until [[ $(docker inspect -f '{{.State.Health.Status}}' "$api") == healthy ]]; do sleep 1; done
  end=$(date +%s.%N)
  compose_up_seconds=$(python3 -c "print(f'{$end - $start:.1f}')")
  local token doc id state=processing
  token=$("${compose[@]}" exec -T api ai-helper-core token --org org-check --user alice)
  compose_chat=$(curl -s -m 120 -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/api/chat/completions \
    -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"model": "local", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}')
  [[ $compose_chat == 200 ]] || { echo "compose chat: $compose_chat" >&2; exit 1; }
  python3 -c "print('\n\n'.join(f'Section {i}. The VPN client is GlobalProtect. ' + 'lorem ipsum ' * 80 for i in range(60)))" >"$WORK/vpn.txt"
  doc=$(curl -s -m 60 http://127.0.0.1:8000/api/knowledge/documents -H "Authorization: Bearer $token" \
    -F "files=@$WORK/vpn.txt;type=text/plain")
  id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["documents"][0]["id"])' "$doc")
  for _ in $(seq 120); do
    state=$(curl -s http://127.0.0.1:8000/api/knowledge/documents/"$id" -H "Authorization: Bearer $token" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
    [[ $state == processing ]] || break
    sleep 1
  done
  [[ $state == ready ]] || { echo "the worker left the document $state" >&2; exit 1; }
  "${compose[@]}" logs worker 2>/dev/null | grep -q "knowledge.ingest" ||
    { echo "the worker did not run the ingestion" >&2; exit 1; }
  compose_ingest=$state
  "${compose[@]}" stop >/dev/null 2>&1
  compose_exits="api $(docker inspect -f '{{.State.ExitCode}}' "$api"), worker $(docker inspect -f '{{.State.ExitCode}}' "$("${compose[@]}" ps -q worker)")"
  [[ $compose_exits == "api 0, worker 0" ]] || { echo "compose stop: $compose_exits" >&2; exit 1; }
  "${compose[@]}" down -v >/dev/null 2>&1
}

status_of() { printf '%s' "${1%%$'\n'*}"; }  # the first line (no pipe into head: SIGPIPE)

main() {
  [[ $(id -u) == 0 ]] || { echo "run as root (installs packages, starts dockerd)" >&2; exit 1; }
  mkdir -p "$WORK"
  ensure_tools
  ensure_dockerd
  ensure_base

  local start end build_seconds=skipped
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then  # SKIP_BUILD=1: check the image built last time
    log "docker build --network host -t $IMAGE"
    start=$(date +%s.%N)
    docker build --network host -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 ||
      { tail -n 40 "$WORK/build.log" >&2; exit 1; }
    end=$(date +%s.%N)
    build_seconds="$(python3 -c "print(f'{$end - $start:.1f}')") s"
  fi

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

  check_compose

  printf '\n| check | result |\n|---|---|\n'
  printf '| build (docker build --network host) | %s |\n' "$build_seconds"
  printf '| image size | %s MB |\n' "$(python3 -c "print(f'{$size / 1e6:.0f}')")"
  printf '| base image %s | %s MB |\n' "$BASE" \
    "$(python3 -c "print(f'{$(docker image inspect -f '{{.Size}}' "$BASE") / 1e6:.0f}')")"
  printf '| start to /healthz 200 (--network none) | %s s |\n' "$up_seconds"
  printf '| start to docker health `healthy` | %s s |\n' "$ready_seconds"
  printf '| /healthz | %s |\n' "$healthz"
  printf '| user | %s (uid %s) |\n' "$user" "$uid"
  printf '| chat with `local`, offline | %s |\n' "${answer//$'\n'/ }"
  printf '| docker stop (SIGTERM) | exit %s after %s s |\n' "$exit_code" "$stop_seconds"
  printf '| docker-compose.yml up to api healthy | %s s |\n' "$compose_up_seconds"
  printf '| compose: chat, upload ingested by the worker | %s, %s |\n' "$compose_chat" "$compose_ingest"
  printf '| compose stop | exit codes: %s |\n' "$compose_exits"
}

main "$@"
