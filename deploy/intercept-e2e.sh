#!/usr/bin/env bash
# HTTPS interception end to end against a REAL Envoy (1.37 or newer) in
# Docker: the scenarios the Go tests run against the Envoy stand-in
# (cmd/ocisigner/intercept_e2e_test.go), here with the shipped
# docker-compose.yml and envoy.yaml, and real OCI verifying what the gateway
# signed with your profile.
#
# It could not be run where it was written (no Docker engine, no Envoy, no
# OCI account there): treat its first run as the test of the script itself.
#
#   deploy/intercept-e2e.sh                # profile DEFAULT of ~/.oci/config
#   OCI_CLI_PROFILE=TEST123 deploy/intercept-e2e.sh
#
# Needs: docker with compose v2, curl, openssl; optional: /usr/bin/python3
# with requests (Debian's python3-requests), the oci CLI. Every request it
# sends is read-only (the namespace), or refused by the gateway before it
# leaves (credential minting, a wrong host). The project it starts
# (ocisigner-e2e) is removed at the end, its CA volume with it.
#
# Variables: OCI_CONFIG_DIR, OCI_CLI_PROFILE, OCISIGNER_UID, OCISIGNER_GID
# (as docker-compose.yml), REGION (default: the profile's region in the
# config), LEAF_TTL (default 20s: the expiry scenario waits past it). The
# gateway is published on 127.0.0.1:10000, as docker-compose.yml does. The
# admin port and the CA volume are read with a throwaway busybox container.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=10000
LEAF_TTL=${LEAF_TTL:-20s}
PROJECT=ocisigner-e2e
PROXY="http://127.0.0.1:${PORT}"
work=$(mktemp -d)
failures=0

compose() {
  docker compose -p "$PROJECT" -f docker-compose.yml -f "$work/override.yml" "$@"
}

cleanup() {
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

pass() { printf 'PASS  %s\n' "$1"; }
fail() {
  printf 'FAIL  %s: %s\n' "$1" "$2"
  failures=$((failures + 1))
}

for tool in docker curl openssl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

# A leaf TTL short enough to watch a rotation.
cat >"$work/override.yml" <<EOF
services:
  signer:
    environment:
      OCISIGNER_INTERCEPT_LEAF_TTL: "${LEAF_TTL}"
EOF

echo "== starting the gateway (builds the signer image; waits for the profile to work)"
export OCISIGNER_UID=${OCISIGNER_UID:-$(id -u)} OCISIGNER_GID=${OCISIGNER_GID:-$(id -g)}
compose up -d --build --wait gateway
for _ in $(seq 30); do
  curl -s -o /dev/null "http://127.0.0.1:${PORT}/" && break
  sleep 1
done
envoy_version=$(compose exec -T gateway envoy --version | grep -o 'version: [^ ]*' || true)
echo "Envoy: ${envoy_version}"

echo "== the CA: ocisigner ca and /ca.pem"
compose exec -T signer /usr/local/bin/ocisigner ca >"$work/ca.pem"
compose exec -T signer /usr/local/bin/ocisigner ca --bundle - >"$work/bundle.pem"
# The admin port is on the compose network only: ask from the signer's
# network namespace.
signer_id=$(compose ps -q signer)
docker run --rm --network "container:${signer_id}" busybox wget -qO- http://127.0.0.1:9465/ca.pem >"$work/ca-admin.pem" || true
if cmp -s "$work/ca.pem" "$work/ca-admin.pem"; then pass "ocisigner ca = /ca.pem"; else fail "ocisigner ca = /ca.pem" "they differ"; fi
key_mode=$(docker run --rm -v "${PROJECT}_state:/s:ro" busybox stat -c %a /s/ca-key.pem 2>/dev/null || echo unknown)
if [ "$key_mode" = 600 ]; then pass "CA key mode 0600"; else fail "CA key mode 0600" "mode $key_mode"; fi
if compose logs signer 2>&1 | grep -q "PRIVATE KEY"; then fail "CA key never logged" "the log holds PRIVATE KEY"; else pass "CA key never logged"; fi

config_file="${OCI_CONFIG_DIR:-$HOME/.oci}/config"
profile=${OCI_CLI_PROFILE:-DEFAULT}
REGION=${REGION:-$(awk -v p="[$profile]" '$0 == p {s = 1; next} /^\[/ {s = 0} s && $1 ~ /^region/ {sub(/^[^=]*= */, ""); print; exit}' "$config_file" 2>/dev/null || true)}
if [ -z "$REGION" ]; then
  echo "set REGION: no region for profile $profile in $config_file" >&2
  exit 2
fi
OS_HOST="objectstorage.${REGION}.oraclecloud.com"
IDENTITY_HOST="identity.${REGION}.oraclecloud.com"
THROWAWAY='Signature version="1",keyId="ocid1.tenancy.oc1..throwaway/ocid1.user.oc1..throwaway/00:11",algorithm="rsa-sha256",headers="date",signature="eA=="'
echo "== region ${REGION}"

# curl through the proxy with the bundle; prints "<status> <http version>".
pcurl() {
  curl -sS -o "$work/body" -w '%{http_code} %{http_version}' --max-time 30 \
    --proxy "$PROXY" --cacert "$work/bundle.pem" -H "Authorization: $THROWAWAY" "$@"
}

echo "== clients, unmodified (each signs with a throwaway key or not at all; OCI verifies the real one)"
for v in 1.1 2; do
  got=$(pcurl "--http${v}" "https://${OS_HOST}/n/" || true)
  if [ "$got" = "200 ${v}" ]; then pass "curl HTTP/${v}: GetNamespace $(cat "$work/body")"; else fail "curl HTTP/${v}" "$got $(cat "$work/body" 2>/dev/null)"; fi
done
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import requests' 2>/dev/null; then
  got=$(HTTPS_PROXY=$PROXY REQUESTS_CA_BUNDLE=$work/bundle.pem /usr/bin/python3 -c \
    "import requests; r = requests.get('https://${OS_HOST}/n/', timeout=30); print(r.status_code)" 2>&1 || true)
  if [ "$got" = 200 ]; then pass "python3-requests (HTTP/1.0 CONNECT)"; else fail "python3-requests" "$got"; fi
else
  echo "SKIP  python3-requests: apt-get install python3-requests"
fi
if command -v oci >/dev/null; then
  docker run --rm --user "$(id -u):$(id -g)" -v "$work:/w" --entrypoint /usr/local/bin/ocisigner "${PROJECT}-signer" \
    client-config --dir /w/throwaway --region "$REGION" >/dev/null
  sed -i "s#/w/throwaway#$work/throwaway#" "$work/throwaway/config"
  got=$(HTTPS_PROXY=$PROXY REQUESTS_CA_BUNDLE=$work/bundle.pem oci os ns get --config-file "$work/throwaway/config" 2>&1 || true)
  if grep -q '"data"' <<<"$got"; then pass "oci CLI with a throwaway config"; else fail "oci CLI" "$got"; fi
else
  echo "SKIP  oci CLI: not installed"
fi

# A series of the signer's /metrics (0 when absent).
metric() {
  docker run --rm --network "container:${signer_id}" busybox wget -qO- http://127.0.0.1:9465/metrics |
    awk -v s="$1" '$1 == s {print $2; found = 1} END {if (!found) print 0}'
}

echo "== refusals"
streams_before=$(metric ocisigner_intercept_sds_streams)
minted_before=$(metric 'ocisigner_intercept_certificates_total{event="minted"}')
refused_before=$(metric 'ocisigner_intercept_refusals_total{reason="policy"}')
# curl reports the CONNECT's status when the tunnel is refused.
connect=$(curl -sv --max-time 10 -x "$PROXY" https://example.com/ 2>&1 | grep -o 'CONNECT tunnel failed, response [0-9]*' || true)
if grep -q 403 <<<"$connect"; then pass "CONNECT example.com: 403"; else fail "CONNECT example.com" "${connect:-no CONNECT refusal}"; fi
if [ "$(metric ocisigner_intercept_sds_streams)" = "$streams_before" ] && [ "$(metric 'ocisigner_intercept_certificates_total{event="minted"}')" = "$minted_before" ] &&
  [ "$(metric 'ocisigner_intercept_refusals_total{reason="policy"}')" = "$refused_before" ]; then
  pass "CONNECT example.com: no SDS stream, no certificate asked for"
else
  fail "CONNECT example.com" "the SDS saw it"
fi

# openssl s_client through the proxy (OpenSSL 3.0+: -proxy).
handshake() { # sni-or-empty → output
  local sni_opt=(-servername "$1")
  [ -z "$1" ] && sni_opt=(-noservername)
  timeout 20 openssl s_client -proxy "127.0.0.1:${PORT}" -connect "${OS_HOST}:443" "${sni_opt[@]}" \
    -CAfile "$work/ca.pem" -alpn http/1.1 </dev/null 2>&1 || true
}
for sni in example.com "" www.oraclecloud.com; do
  start=$(date +%s%N)
  out=$(handshake "$sni")
  ms=$((($(date +%s%N) - start) / 1000000))
  refused=$(metric 'ocisigner_intercept_refusals_total{reason="policy"}')
  if grep -qi 'alert handshake failure' <<<"$out" && [ "$refused" != "$refused_before" ]; then
    pass "SNI '${sni:-<none>}': handshake_failure alert in ${ms} ms, the SDS's refusal (policy refusals ${refused_before} -> ${refused}), not the 5 s timeout"
  else
    fail "SNI '${sni:-<none>}'" "alert? refusals ${refused_before} -> ${refused} ($ms ms): $(tail -3 <<<"$out")"
  fi
  refused_before=$refused
done

got=$(pcurl --http1.1 -H "Host: iaas.${REGION}.oraclecloud.com" "https://${OS_HOST}/n/" || true)
if [ "${got%% *}" = 421 ]; then pass "SNI != :authority: 421"; else fail "SNI != :authority" "$got"; fi

got=$(pcurl --http2 -H 'content-type: application/json' --data '{"key":"x"}' "https://${IDENTITY_HOST}/20160918/users/ocid1.user.oc1..x/apiKeys" || true)
if [ "${got%% *}" = 403 ] && grep -q -- --allow-credential-minting "$work/body"; then pass "credential minting: 403 naming the flag"
else fail "credential minting" "$got $(cat "$work/body")"; fi

echo "== expiry: a ${LEAF_TTL} leaf is replaced before it expires"
serial1=$(handshake "$OS_HOST" | openssl x509 -noout -serial 2>/dev/null || true)
secs=${LEAF_TTL%s}
sleep "$((secs + 2))"
leaf=$(handshake "$OS_HOST" | openssl x509 2>/dev/null || true)
if [ -n "$leaf" ] && openssl x509 -noout -checkend 0 <<<"$leaf" >/dev/null && [ "$(openssl x509 -noout -serial <<<"$leaf")" != "$serial1" ]; then
  pass "no expired leaf served after ${LEAF_TTL}"
else
  fail "expiry" "served $(openssl x509 -noout -serial -enddate <<<"$leaf" 2>&1 | tr '\n' ' ') (first $serial1)"
fi

echo "== SDS down (the signer paused): a cached name still handshakes, a new one fails at the 5 s connect timeout"
compose pause signer >/dev/null
out=$(handshake "$OS_HOST")
if grep -q 'Verify return code: 0' <<<"$out"; then pass "cached name with the signer paused"; else fail "cached name" "$(tail -3 <<<"$out")"; fi
start=$(date +%s%N)
out=$(timeout 30 openssl s_client -proxy "127.0.0.1:${PORT}" -connect "iaas.${REGION}.oraclecloud.com:443" \
  -servername "iaas.${REGION}.oraclecloud.com" -CAfile "$work/ca.pem" </dev/null 2>&1 || true)
ms=$((($(date +%s%N) - start) / 1000000))
compose unpause signer >/dev/null
if ! grep -q 'Verify return code: 0' <<<"$out" && [ "$ms" -lt 15000 ]; then pass "new name with the signer paused: closed after ${ms} ms, no hang"
else fail "new name with the signer paused" "after ${ms} ms: $(tail -3 <<<"$out")"; fi

echo
if [ "$failures" -gt 0 ]; then
  echo "${failures} scenario(s) failed; logs:"
  compose logs --tail 50
  exit 1
fi
echo "all scenarios passed"
