#!/usr/bin/env bash
# Latchkey's load benchmark: client_credentials at the token endpoint and RFC 7662
# introspection, measured with wrk through the shared harness (PEER_BENCH/load).
#
#   bench/bench.sh [options]            Latchkey alone: one JSON line per run (or per median)
#   bench/bench.sh --compare [options]  Latchkey beside the peer (node-oidc-provider), runs
#                                       interleaved; prints the JSON lines and a markdown table
#
# Options:
#   -d SECONDS       length of each run (default 10)
#   -c CONNECTIONS   concurrent connections (default 32)
#   -r ROUNDS        runs per bench (default 1 alone, 3 with --compare); more than one run
#                    alone also prints a line of medians
#   -w SECONDS       warm-up per target before the runs (default 3; 0 = none)
#   -b BENCH         token | introspect | both (default both) | keys: API-key verification
#                    (GET /v1/utils/authtest with a key, introspection of a key, and
#                    GET /healthz of the same server for scale), interleaved, -r rounds |
#                    flow: authorization-code round trips and refresh rotations through the
#                    pages, with the shared flowbench.mjs (-c users, default 16 for flow);
#                    with --compare the peer runs interleaved |
#                    soak: mixed traffic for -d seconds (default 600) at an offered -R
#                    requests per second in all (default 2000): client_credentials tokens,
#                    introspection of a JWT and of a key, key verification and key creation
#                    (POST /v1/api-keys), each minute its own wrk run per kind; prints RSS,
#                    errors, rps and p99 per minute and exits 1 when the RSS grew more than
#                    10 % from the first minute's end to the last's, or any request failed
#   -R RATE          with -b keys: offer RATE requests per second in all (spread over the wrk
#                    threads on an even schedule) instead of as many as the connections carry;
#                    latency is then measured at that load, not at saturation
#   --check-bodies   with -b keys: check every answer's body during the runs (wrk's per-answer
#                    Lua hook, which costs wrk about a quarter more CPU per request on the
#                    cores it shares with the server); without it each bench's answer is
#                    checked once with curl before the runs, and wrk counts answers >= 400
#   --compare        start the peer and run the harness's compare.sh against both servers
#   --no-build       use target/release/latchkey as it is
#   -h, --help       this text
#
# Environment:
#   PORT                 Latchkey's port (default 8080)
#   BENCH_DATABASE_URL   store to use instead of a fresh SQLite file, e.g.
#                        postgres://127.0.0.1/bench_latchkey: a database that does not exist is
#                        created with psql and dropped at the end; an existing one is used as it
#                        is (its "bench" organization reused) and needs its BENCH_SECRET
#   BENCH_SECRET         LATCHKEY_SECRET to use (default: 32 fresh random bytes, base64)
#   PEER_BENCH           the shared harness, relative to the repo root (default ../shared/bench)
#   THREADS, PAUSE, JSON_OUT, CC_SCOPE   passed through to the harness (see its README)
#   KEEP=1               keep the temporary working directory (database, log) afterwards
#
# Only ratios from one interleaved --compare run mean anything: the machine is shared and noisy.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "bench: $*" >&2; exit 2; }

# --- options ---------------------------------------------------------------------------------
COMPARE=0; CHECK_BODIES=0; BUILD=1; SECS=10; CONNS=""; ROUNDS=""; WARM=3; BENCH=both; RATE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --compare) COMPARE=1 ;;
    --check-bodies) CHECK_BODIES=1 ;;
    --no-build) BUILD=0 ;;
    -d) SECS="${2:?-d needs SECONDS}"; shift ;;
    -c) CONNS="${2:?-c needs CONNECTIONS}"; shift ;;
    -r) ROUNDS="${2:?-r needs ROUNDS}"; shift ;;
    -w) WARM="${2:?-w needs SECONDS}"; shift ;;
    -b) BENCH="${2:?-b needs token|introspect|both}"; shift ;;
    -R) RATE="${2:?-R needs RATE}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
[[ -n "$CONNS" ]] || { if [[ "$BENCH" == flow ]]; then CONNS=16; else CONNS=32; fi; }
[[ -n "$ROUNDS" ]] || { if [[ $COMPARE -eq 1 ]]; then ROUNDS=3; else ROUNDS=1; fi; }
for n in "$SECS" "$CONNS" "$ROUNDS" "$WARM" "$RATE"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "not a whole number: $n"
done
[[ "$SECS" -gt 0 && "$CONNS" -gt 0 && "$ROUNDS" -gt 0 ]] || die "-d, -c and -r must be positive"
case "$BENCH" in token|introspect|both|keys|flow|soak) ;; *) die "-b token|introspect|both|keys|flow|soak" ;; esac
[[ "$BENCH" != keys || $COMPARE -eq 0 ]] || die "-b keys has no peer to compare with (the peer has no API keys)"
[[ "$RATE" -eq 0 || "$BENCH" == keys || "$BENCH" == soak ]] || die "-R works with -b keys and soak only (the shared harness runs the others)"
[[ "$BENCH" != soak || $COMPARE -eq 0 ]] || die "-b soak runs Latchkey alone"
if [[ "$BENCH" == soak ]]; then
  SOAK_SECS=600; SOAK_RATE=2000
  [[ "$SECS" == 10 ]] || SOAK_SECS="$SECS"
  [[ "$RATE" -eq 0 ]] || SOAK_RATE="$RATE"
  [[ "$SOAK_SECS" -ge 120 ]] || die "-b soak needs -d of at least 120 (two minutes)"
fi

# --- paths -----------------------------------------------------------------------------------
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER_BENCH="${PEER_BENCH:-../shared/bench}"
# Relative to the repo root, whatever the caller's directory; resolved to an absolute path.
PEER_BENCH="$(cd "$REPO" && cd "$PEER_BENCH" 2>/dev/null && pwd)" \
  || die "the shared harness is not at ${PEER_BENCH} (from $REPO); set PEER_BENCH"
LOAD="$PEER_BENCH/load"
PEER="$PEER_BENCH/peer"
[[ -x "$LOAD/token_bench.sh" && -x "$LOAD/compare.sh" ]] || die "no load scripts in $LOAD"
BIN="$REPO/target/release/latchkey"
PORT="${PORT:-8080}"
BASE="http://127.0.0.1:$PORT"

# --- tools -----------------------------------------------------------------------------------
command -v wrk >/dev/null || die "wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS)"
command -v curl >/dev/null || die "curl is not installed: apt-get install -y curl"
command -v python3 >/dev/null || die "python3 is not installed (the harness uses it): apt-get install -y python3"
if [[ $COMPARE -eq 1 ]]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "--compare needs node and npm for the peer: apt-get install -y nodejs npm"
  fi
fi

# --- clean-up: stop only what this script started -------------------------------------------
WORK=""; LK_PID=""; PEER_STARTED=0; DROP_DB_URL=""; DB_NAME=""
cleanup() {
  local rc=$?
  if [[ -n "$LK_PID" ]] && kill -0 "$LK_PID" 2>/dev/null; then
    kill -TERM "$LK_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$LK_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$LK_PID" 2>/dev/null || true
    wait "$LK_PID" 2>/dev/null || true
  fi
  if [[ $PEER_STARTED -eq 1 ]]; then "$PEER/stop.sh" || true; fi
  if [[ -n "$DROP_DB_URL" && "${KEEP:-0}" != 1 ]]; then
    psql "$DROP_DB_URL" -qc "DROP DATABASE IF EXISTS \"$DB_NAME\"" >&2 \
      || echo "bench: could not drop database $DB_NAME" >&2
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if [[ "${KEEP:-0}" == 1 || $rc -ne 0 ]]; then
      echo "bench: working directory kept: $WORK (log: $WORK/latchkey.log)" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------------
if [[ $BUILD -eq 1 ]]; then
  echo "bench: cargo build --release" >&2
  (cd "$REPO" && cargo build --release >&2)
fi
[[ -x "$BIN" ]] || die "no binary at $BIN (run cargo build --release)"

# --- a fresh instance --------------------------------------------------------------------------
if curl -fsS -o /dev/null --max-time 2 "$BASE/healthz" 2>/dev/null; then
  die "something already answers on $BASE; stop it or set PORT"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench.XXXXXX")"
unset LATCHKEY_CONFIG # no latchkey.toml from elsewhere; the working directory has none
export DATABASE_URL="${BENCH_DATABASE_URL:-$WORK/latchkey.db}"
LATCHKEY_SECRET="${BENCH_SECRET:-$(head -c32 /dev/urandom | base64)}"
export LATCHKEY_SECRET
export LATCHKEY_LOG=warn
export LATCHKEY_BIND="127.0.0.1:$PORT"
export LATCHKEY_ISSUER="$BASE"
cd "$WORK"

ORG=bench
if [[ "$DATABASE_URL" == postgres://* || "$DATABASE_URL" == postgresql://* ]]; then
  command -v psql >/dev/null || die "BENCH_DATABASE_URL is PostgreSQL but psql is missing: apt-get install -y postgresql-client"
  if ! psql "$DATABASE_URL" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    # Create the database through the maintenance database of the same server.
    DB_NAME="$(python3 -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).path.lstrip("/"))' "$DATABASE_URL")"
    ADMIN_URL="$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/postgres")))' "$DATABASE_URL")"
    [[ "$DB_NAME" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "cannot create a database named '$DB_NAME'"
    echo "bench: creating database $DB_NAME" >&2
    psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB_NAME\"" >&2 || die "cannot create database $DB_NAME"
    DROP_DB_URL="$ADMIN_URL" # created here, so dropped on exit
  fi
  # The org may exist from an earlier run on the same database: reuse it, with a new client.
  "$BIN" org create "$ORG" >/dev/null 2>"$WORK/org.err" \
    || grep -q "already exists" "$WORK/org.err" || { cat "$WORK/org.err" >&2; die "org create failed"; }
else
  "$BIN" org create "$ORG" >/dev/null
fi
CLIENT_JSON="$("$BIN" client create --org "$ORG" --name bench \
  --grant-types client_credentials --scopes "read write" 2>"$WORK/client.err")" \
  || { cat "$WORK/client.err" >&2; die "client create failed"; }
CLIENT_ID="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$CLIENT_JSON")"
CLIENT_SECRET="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$CLIENT_JSON")"
# compare.sh splits its targets on commas.
[[ "$CLIENT_ID$CLIENT_SECRET" != *,* ]] || die "client credentials contain a comma"

"$BIN" serve >"$WORK/latchkey.log" 2>&1 </dev/null &
LK_PID=$!
for _ in $(seq 1 120); do # at most 30 s
  if curl -fsS -o /dev/null --max-time 2 "$BASE/readyz" 2>/dev/null; then break; fi
  kill -0 "$LK_PID" 2>/dev/null || { cat "$WORK/latchkey.log" >&2; die "latchkey serve exited during start-up"; }
  sleep 0.25
done
curl -fsS -o /dev/null --max-time 2 "$BASE/readyz" || die "latchkey not ready on $BASE within 30 s"
STORE="$(python3 -c 'import re,sys; print(re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", sys.argv[1]))' "$DATABASE_URL")"
echo "bench: latchkey pid $LK_PID on $BASE, store $STORE" >&2

# --- the runs --------------------------------------------------------------------------------
export THREADS="${THREADS:-2}"

# keys_run NAME METHOD PATH AUTH BODY EXPECT SECONDS -> one JSON line (wrk + server CPU)
keys_run() {
  local name="$1" method="$2" path="$3" auth="$4" body="$5" expect="$6" secs="$7" out t0 t1 w0 w1
  out="$(mktemp)"
  t0="$(proc_ticks "$LK_PID")"; w0="$(date +%s.%N)"
  local per_thread=""
  [[ "$RATE" -gt 0 ]] && per_thread="$(python3 -c 'import sys; print(int(sys.argv[1]) / int(sys.argv[2]))' "$RATE" "$THREADS")"
  [[ $CHECK_BODIES -eq 1 ]] || expect=""
  BENCH_METHOD="$method" BENCH_AUTH="$auth" BENCH_BODY="$body" BENCH_EXPECT="$expect" BENCH_OUT="$out" \
    BENCH_RATE="$per_thread" timeout --kill-after=5 $((secs + 30)) wrk -t "$THREADS" -c "$CONNS" -d "${secs}s" --timeout 5s \
    -s "$REPO/bench/request.lua" "$BASE$path" >"$out.wrk" 2>&1 || { cat "$out.wrk" >&2; die "wrk failed"; }
  t1="$(proc_ticks "$LK_PID")"; w1="$(date +%s.%N)"
  python3 - "$out" "$name" "$t0" "$t1" "$w0" "$w1" "$(getconf CLK_TCK)" "$STORE" "$CONNS" "$RATE" <<'PY'
import json, sys
out, name, t0, t1, w0, w1, hz, store, conns, rate = sys.argv[1:]
r = json.load(open(out))
r.update(bench=name, target="latchkey", store=store.split("://")[0] if "://" in store else "sqlite",
         connections=int(conns), offered_rps=int(rate) or None,
         server_cpu_pct=round(100.0 * (int(t1) - int(t0)) / int(hz) / (float(w1) - float(w0)), 1))
print(json.dumps(r))
PY
  rm -f "$out" "$out.wrk"
}

start_peer() {
  PEER_PID_FILE="$PEER/.run/peer.pid"
  if [[ -f "$PEER_PID_FILE" ]] && kill -0 "$(cat "$PEER_PID_FILE")" 2>/dev/null; then
    echo "bench: the peer is already running (pid $(cat "$PEER_PID_FILE")); using it, not stopping it" >&2
  else
    "$PEER/start.sh" >&2
    PEER_STARTED=1
  fi
  PEER_PID="$(cat "$PEER_PID_FILE")"
}

if [[ "$BENCH" == flow ]]; then
  FLOWBENCH="$PEER_BENCH/flow/flowbench.mjs"
  [[ -f "$FLOWBENCH" ]] || die "no flowbench at $FLOWBENCH"
  command -v node >/dev/null || die "-b flow needs node (apt-get install -y nodejs)"
  PUB_JSON="$("$BIN" client create --org "$ORG" --name flowbench --public \
    --grant-types authorization_code,refresh_token --redirect-uri http://127.0.0.1:9999/cb \
    --scopes "openid profile offline_access" 2>/dev/null)" || die "public client create failed"
  PUB_ID="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$PUB_JSON")"
  FLOW_USER="flowbench$RANDOM$RANDOM"
  FLOW_PASS="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  printf '%s\n' "$FLOW_PASS" | "$BIN" user create --org "$ORG" --username "$FLOW_USER" --password-stdin >/dev/null 2>&1 \
    || die "user create failed"
  targets=("latchkey")
  if [[ $COMPARE -eq 1 ]]; then start_peer; targets=("peer" "latchkey"); fi
  flow_run() { # TARGET MODE SECONDS -> one JSON line
    local target="$1" mode="$2" secs="$3"
    if [[ "$target" == peer ]]; then
      MODE="$mode" CONCURRENCY="$CONNS" WARMUP_SECONDS=1 DRIVER=peer \
        ISSUER="http://127.0.0.1:${PEER_PORT:-3000}" PUB_CLIENT_ID=harness-public LOGIN_USER=u LOGIN_PASS=p \
        SERVER_PID="$PEER_PID" node "$FLOWBENCH" SECONDS="$secs"
    else
      MODE="$mode" CONCURRENCY="$CONNS" WARMUP_SECONDS=1 DRIVER=generic \
        ISSUER="$BASE" PUB_CLIENT_ID="$PUB_ID" LOGIN_USER="$FLOW_USER" LOGIN_PASS="$FLOW_PASS" \
        SERVER_PID="$LK_PID" node "$FLOWBENCH" SECONDS="$secs"
    fi | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); d.update(bench=sys.argv[1], target=sys.argv[2], store=sys.argv[3]); print(json.dumps(d))' \
        "$mode" "$target" "$([[ "$target" == peer ]] && echo memory || { [[ "$STORE" == postgres* ]] && echo postgres || echo sqlite; })"
  }
  results="$(mktemp)"
  for _ in $(seq 1 "$ROUNDS"); do # interleaved: peer, latchkey, peer, latchkey …
    for mode in code refresh; do
      for t in "${targets[@]}"; do
        flow_run "$t" "$mode" "$SECS" | tee -a "$results"
        if [[ -n "${JSON_OUT:-}" ]]; then tail -n1 "$results" >>"$JSON_OUT"; fi
      done
    done
  done
  python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| flow | target | store | ops/s (median) | p50 ms | p99 ms | errors | server CPU % |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for mode in dict.fromkeys(r["bench"] for r in rows):
    for t in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["bench"] == mode and r["target"] == t]
        if not rs: continue
        med = lambda k: statistics.median(r.get(k) or 0 for r in rs)
        print(f"| {mode} | {t} | {rs[0]['store']} | {med('ops_per_s'):,.0f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | "
              f"{sum(r.get('errors') or 0 for r in rs)} | {med('server_cpu_pct'):.0f} |")
PY
  rm -f "$results"
elif [[ "$BENCH" == soak ]]; then
  source "$LOAD/lib.sh" # proc_ticks, basic_auth, form_encode
  KEY_JSON="$("$BIN" api-key create --org "$ORG" --env live --scopes read,keys:manage --name soak 2>/dev/null)"
  API_KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["api_key"])' "$KEY_JSON")"
  BASIC="$(basic_auth "$CLIENT_ID" "$CLIENT_SECRET")"
  JWT="$(curl -fsS -H "Authorization: $BASIC" --data grant_type=client_credentials "$BASE/oauth2/token" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
  # Share of the offered rate per kind (in %), and what each sends.
  runs=(
    "token|30|POST|/oauth2/token|$BASIC|grant_type=client_credentials|access_token"
    "introspect_jwt|20|POST|/oauth2/introspect|$BASIC|$(form_encode token "$JWT")|\"active\":true"
    "authtest|30|GET|/v1/utils/authtest|Bearer $API_KEY||Auth successful"
    "introspect_key|15|POST|/oauth2/introspect|$BASIC|$(form_encode token "$API_KEY")|\"active\":true"
    "create_key|5|POST|/v1/api-keys|Bearer $API_KEY|{\"name\":\"soak\",\"scopes\":[\"read\"]}|\"api_key\""
  )
  for r in "${runs[@]}"; do
    IFS='|' read -r n share m p a b e <<<"$r"
    got="$(curl -fsS -X "$m" ${a:+-H "Authorization: $a"} ${b:+--data "$b"} "$BASE$p")" \
      || die "$n: $m $p failed"
    [[ "$got" == *"$e"* ]] || die "$n: the answer lacks $e: $got"
  done
  minutes=$((SOAK_SECS / 60))
  echo "bench: soak, $minutes minute(s) at $SOAK_RATE requests/s offered, $CONNS connections in all" >&2
  results="$(mktemp)"
  for minute in $(seq 1 "$minutes"); do
    pids=()
    for r in "${runs[@]}"; do
      IFS='|' read -r n share m p a b e <<<"$r"
      rate=$((SOAK_RATE * share / 100)); conns=$(( (CONNS * share + 99) / 100 ))
      [[ $conns -ge 2 ]] || conns=2
      RATE="$rate" CONNS="$conns" keys_run "$n" "$m" "$p" "$a" "$b" "$e" 60 >"$results.$n" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    kill -0 "$LK_PID" 2>/dev/null || { cat "$WORK/latchkey.log" >&2; die "latchkey exited during the soak"; }
    rss_kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$LK_PID/status")"
    for r in "${runs[@]}"; do
      IFS='|' read -r n _ <<<"$r"
      python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read()); d.update(minute=int(sys.argv[2]), rss_kb=int(sys.argv[3])); print(json.dumps(d))' \
        "$results.$n" "$minute" "$rss_kb" >>"$results"
      if [[ -n "${JSON_OUT:-}" ]]; then tail -n1 "$results" >>"$JSON_OUT"; fi
      rm -f "$results.$n"
    done
  done
  python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r["bench"] for r in rows))
minutes = sorted({r["minute"] for r in rows})
print("\n| minute | RSS MiB | rps | errors | " + " | ".join(f"{n} p99 ms" for n in names) + " |")
print("|---:|---:|---:|---:|" + "---:|" * len(names))
for m in minutes:
    rs = {r["bench"]: r for r in rows if r["minute"] == m}
    any_r = next(iter(rs.values()))
    print(f"| {m} | {any_r['rss_kb'] / 1024:.1f} | {sum(r['rps'] for r in rs.values()):,.0f} | "
          f"{sum(r['non2xx'] + r.get('socket_errors', 0) for r in rs.values())} | "
          + " | ".join(f"{rs[n]['p99_ms']:.2f}" for n in names) + " |")
first = next(r for r in rows if r["minute"] == minutes[0])["rss_kb"]
last = next(r for r in rows if r["minute"] == minutes[-1])["rss_kb"]
errors = sum(r["non2xx"] + r.get("socket_errors", 0) for r in rows)
growth = 100.0 * (last - first) / first
print(f"\nRSS after minute 1: {first / 1024:.1f} MiB, after minute {minutes[-1]}: {last / 1024:.1f} MiB "
      f"({growth:+.1f} %); {errors} error(s) in {sum(r['requests'] for r in rows if 'requests' in r) or 'all'} requests")
sys.exit(0 if growth <= 10.0 and errors == 0 else 1)
PY
  soak_rc=$?
  rm -f "$results"
  [[ $soak_rc -eq 0 ]] || { echo "bench: the soak failed its bounds (RSS growth over 10 % or errors)" >&2; exit 1; }
elif [[ "$BENCH" == keys ]]; then
  source "$LOAD/lib.sh" # proc_ticks, basic_auth, form_encode
  KEY_JSON="$("$BIN" api-key create --org "$ORG" --env live --scopes read --name bench 2>/dev/null)"
  API_KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["api_key"])' "$KEY_JSON")"
  BASIC="$(basic_auth "$CLIENT_ID" "$CLIENT_SECRET")"
  INTRO_BODY="$(form_encode token "$API_KEY")"
  runs=(
    "healthz|GET|/healthz|||\"ok\""
    "authtest|GET|/v1/utils/authtest|Bearer $API_KEY||Auth successful"
    "introspect_key|POST|/oauth2/introspect|$BASIC|$INTRO_BODY|\"active\":true"
  )
  # Each bench's answer, checked once (during the runs wrk counts answers >= 400, and checks
  # every body only with --check-bodies).
  for r in "${runs[@]}"; do
    IFS='|' read -r n m p a b e <<<"$r"
    got="$(curl -fsS -X "$m" ${a:+-H "Authorization: $a"} ${b:+--data "$b"} "$BASE$p")" \
      || die "$n: $m $p failed"
    [[ "$got" == *"$e"* ]] || die "$n: the answer lacks $e: $got"
  done
  if [[ "$WARM" -gt 0 ]]; then
    for r in "${runs[@]}"; do IFS='|' read -r n m p a b e <<<"$r"; keys_run "$n" "$m" "$p" "$a" "$b" "$e" "$WARM" >/dev/null; done
  fi
  results="$(mktemp)"
  for _ in $(seq 1 "$ROUNDS"); do # interleaved: every bench once per round
    for r in "${runs[@]}"; do
      IFS='|' read -r n m p a b e <<<"$r"
      keys_run "$n" "$m" "$p" "$a" "$b" "$e" "$SECS" | tee -a "$results"
      if [[ -n "${JSON_OUT:-}" ]]; then tail -n1 "$results" >>"$JSON_OUT"; fi
    done
  done
  python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
paced = any(r.get("offered_rps") for r in rows)
print("\n| bench | store | " + ("offered rps | " if paced else "") + "rps (median) | p50 ms | p99 ms | "
      + ("p99 per run | late sends % (max) | p99 bound from the slot, per run | " if paced else "") + "errors | bad body | server CPU % |")
print("|---|---|" + ("---:|" if paced else "") + "---:|---:|---:|" + ("---|---:|---|" if paced else "") + "---:|---:|---:|")
for name in dict.fromkeys(r["bench"] for r in rows):
    rs = [r for r in rows if r["bench"] == name]
    med = lambda k: statistics.median(r[k] for r in rs)
    extra_a = f"{rs[0]['offered_rps']:,} | " if paced else ""
    extra_b = (", ".join(f"{r['p99_ms']:.2f}" for r in rs) + f" | {max(r['late_pct'] for r in rs):.3f} | "
               + ", ".join(f"{r['p99_bound_ms']:.2f}" for r in rs) + " | ") if paced else ""
    print(f"| {name} | {rs[0]['store']} | {extra_a}{med('rps'):,.0f} | {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {extra_b}"
          f"{sum(r['non2xx'] for r in rs)} | {sum(r['bad_body'] for r in rs) if rs[0].get('bodies_checked') else 'not checked'} | {med('server_cpu_pct'):.0f} |")
PY
  rm -f "$results"
elif [[ $COMPARE -eq 0 ]]; then
  benches=(); case "$BENCH" in token) benches=(token) ;; introspect) benches=(introspect) ;; both) benches=(token introspect) ;; esac
  for bench in "${benches[@]}"; do
    script="$LOAD/token_bench.sh"; [[ "$bench" == introspect ]] && script="$LOAD/introspect_bench.sh"
    if [[ "$WARM" -gt 0 ]]; then
      SERVER_PID="$LK_PID" "$script" "$BASE" "$CLIENT_ID" "$CLIENT_SECRET" "$WARM" "$CONNS" >/dev/null
    fi
    # Tag every line with the bench and the target, like compare.sh does.
    if [[ "$ROUNDS" -gt 1 ]]; then
      SERVER_PID="$LK_PID" "$LOAD/median.sh" "$ROUNDS" "$script" "$BASE" "$CLIENT_ID" "$CLIENT_SECRET" "$SECS" "$CONNS"
    else
      SERVER_PID="$LK_PID" "$script" "$BASE" "$CLIENT_ID" "$CLIENT_SECRET" "$SECS" "$CONNS"
    fi | while IFS= read -r line; do
      line="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(bench=sys.argv[2], target="latchkey"); print(json.dumps(d))' "$line" "$bench")"
      echo "$line"
      if [[ -n "${JSON_OUT:-}" ]]; then echo "$line" >>"$JSON_OUT"; fi
    done
  done
else
  start_peer
  PEER_SECRET="${CC_CLIENT_SECRET:-harness-cc-secret-0123456789abcdef0123456789abcdef}"
  PEER_ID="${CC_CLIENT_ID:-harness-cc}"
  PEER_URL="http://127.0.0.1:${PEER_PORT:-3000}"
  # Peer first, then Latchkey, as in the harness README; the JSON lines go to stderr.
  "$LOAD/compare.sh" -r "$ROUNDS" -d "$SECS" -c "$CONNS" -w "$WARM" -b "$BENCH" \
    "peer,$PEER_URL,$PEER_ID,$PEER_SECRET,$PEER_PID,resource=urn:harness:opaque" \
    "latchkey,$BASE,$CLIENT_ID,$CLIENT_SECRET,$LK_PID"
fi

# --- memory and the server log ----------------------------------------------------------------
rss() { # PID NAME -> JSON line with resident memory now and at its peak (kB)
  python3 - "$1" "$2" <<'PY'
import json, sys
pid, name = sys.argv[1:]
f = {}
for l in open(f"/proc/{pid}/status"):
    k, _, v = l.partition(":")
    f[k] = v.split()[0] if v.split() else ""
print(json.dumps({"target": name, "pid": int(pid), "vm_rss_kb": int(f["VmRSS"]), "vm_hwm_kb": int(f["VmHWM"]),
                  "vm_rss_mib": round(int(f["VmRSS"]) / 1024, 1), "vm_hwm_mib": round(int(f["VmHWM"]) / 1024, 1)}))
PY
}
kill -0 "$LK_PID" 2>/dev/null || { cat "$WORK/latchkey.log" >&2; die "latchkey exited during the run"; }
rss "$LK_PID" latchkey
if [[ $COMPARE -eq 1 ]] && kill -0 "$PEER_PID" 2>/dev/null; then rss "$PEER_PID" peer; fi

# LATCHKEY_LOG=warn: anything in the log is a warning or an error worth reading.
if [[ -s "$WORK/latchkey.log" ]]; then
  echo "bench: latchkey logged $(wc -l <"$WORK/latchkey.log") line(s) at warn or above; the first 20:" >&2
  head -n 20 "$WORK/latchkey.log" >&2
else
  echo "bench: latchkey logged nothing at warn or above" >&2
fi
