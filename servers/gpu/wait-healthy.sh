#!/usr/bin/env bash
# Wait until a vLLM server is ready: GET /health, then GET /v1/models, both HTTP 200.
#
#   servers/gpu/wait-healthy.sh URL [TIMEOUT_SECONDS]
#
# URL is the server root or its /v1 base URL (http://127.0.0.1:8001 or http://127.0.0.1:8001/v1).
# TIMEOUT defaults to 900 s (first start downloads the weights). Exit 0 when ready, 1 on timeout,
# 2 on bad usage.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 URL [TIMEOUT_SECONDS]" >&2
  exit 2
fi
url="${1%/}"
url="${url%/v1}"
timeout="${2:-900}"
if ! [[ "${timeout}" =~ ^[0-9]+$ ]]; then
  echo "TIMEOUT must be a whole number of seconds, got '${timeout}'" >&2
  exit 2
fi

deadline=$((SECONDS + timeout))
http_status() {
  curl --silent --output /dev/null --write-out '%{http_code}' --max-time 5 --noproxy '*' "$1" \
    || true
}

for path in /health /v1/models; do
  while true; do
    code="$(http_status "${url}${path}")"
    if [[ "${code}" == "200" ]]; then
      break
    fi
    if ((SECONDS >= deadline)); then
      echo "timed out after ${timeout}s waiting for ${url}${path} (last HTTP status ${code})" >&2
      exit 1
    fi
    sleep 2
  done
done
echo "ready: ${url}/v1 (after ${SECONDS}s)" >&2
