#!/usr/bin/env bash
# Issue 13's targets, with wall time and peak memory (GNU time), each beside
# a baseline measured in the same run:
#   1. full `check` (flows, open beyond need, redundant and shadowed) of allow
#      lists of 10,000 and 50,000 rules (one `-s ADDR -p tcp --dport P -j
#      ACCEPT` each), against the same files parsed only (--no-open
#      --no-redundant);
#   2. the same for the 4,841-rule real-world ruleset (chair), when the corpus
#      is there (AMWALL_REALWORLD, default ../shared/rulesets/real-world);
#   3. `plan --out` (every host's files and SUMMARY.md, on tmpfs) for
#      10,000 clients from the admin's Amanda files (amanda.conf, disklist,
#      hosts file) against the same clients from a topology file.
# Run from the repository root:  bash bench/check.sh [RUNS]   (best of RUNS, 3)
# Nothing is sent anywhere; files go to a temporary directory that is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 2; }
cargo build --release -q
bin=$PWD/target/release/amwall
# On tmpfs: plan's 30,000 files measure amwall, not the disk.
work=$(mktemp -d -p /dev/shm amwall-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# best WHAT ARGS...: the fastest of $runs runs, as "seconds peak-KB".
best() {
  local b="" m=""
  for _ in $(seq "$runs"); do
    /usr/bin/time -o "$work/time" -f "%e %M" "$@" >/dev/null 2>&1 || true
    read -r s k <"$work/time"
    if [ -z "$b" ] || awk "BEGIN{exit !($s < $b)}"; then b=$s m=$k; fi
  done
  echo "$b $m"
}
row() { # label, baseline "s KB", measured "s KB"
  read -r bs bk <<<"$2"; read -r ms mk <<<"$3"
  awk -v l="$1" -v bs="$bs" -v bk="$bk" -v ms="$ms" -v mk="$mk" 'BEGIN{
    printf "%-44s %7.2f s %7.0f MB   baseline %6.2f s %5.0f MB   ratio %5.1fx\n", l, ms, mk/1024, bs, bk/1024, (bs>0? ms/bs : 0) }'
}

allow() { # N -> file
  python3 - "$1" >"$work/allow$1.rules" <<'PY'
import sys
n = int(sys.argv[1])
print("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]")
for i in range(n):
    print(f"-A INPUT -s 10.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32 -p tcp -m tcp --dport {1000 + i % 500} -j ACCEPT")
print("COMMIT")
PY
}

echo "amwall $($bin --version 2>/dev/null | head -n 1), best of $runs, $(nproc) cores"
for n in 10000 50000; do
  allow "$n"
  f="$work/allow$n.rules"
  row "check, $n-rule allow list" \
    "$(best "$bin" check --rules "h=$f" --no-open --no-redundant)" \
    "$(best "$bin" check --rules "h=$f")"
done

corpus=${AMWALL_REALWORLD:-../shared/rulesets/real-world}
chair=$(ls "$corpus"/configs_chair_* 2>/dev/null | head -n 1 || true)
if [ -n "$chair" ]; then
  row "check, 4,841-rule real-world (chair)" \
    "$(best "$bin" check --rules "chair=$chair" --no-open --no-redundant)" \
    "$(best "$bin" check --rules "chair=$chair")"
else
  echo "check, real-world (chair): NOT RUN, no corpus at $corpus"
fi

# 10,000 clients from Amanda's own files, and the same from a topology.
n=10000
mkdir -p "$work/cfg"
cat >"$work/cfg/amanda.conf" <<'CONF'
org "bench"
define dumptype user-tar {
    program "GNUTAR"
    auth "bsd"
    client-port 10080
}
CONF
{
  echo "tshost /etc user-tar"
  for i in $(seq 0 $((n - 1))); do echo "c$i /home user-tar"; done
} >"$work/cfg/disklist"
{
  echo "10.0.0.1 tshost"
  for i in $(seq 0 $((n - 1))); do echo "10.$((1 + i / 65536)).$(((i / 256) % 256)).$((i % 256)) c$i"; done
} >"$work/hosts"
cat >"$work/net.toml" <<'TOML'
[[network]]
name = "lan"
cidr = "10.0.0.0/8"
[[host]]
name = "tshost"
roles = ["server", "client"]
interfaces = [{ name = "eth0", network = "lan", address = "10.0.0.1" }]
TOML
# The same deployment written as a topology: the baseline.
{
  printf '[amanda]\nauth = "bsd"\nclient-port = 10080\n'
  cat "$work/net.toml"
  for i in $(seq 0 $((n - 1))); do
    printf '[[host]]\nname = "c%s"\nroles = ["client"]\ninterfaces = [{ name = "eth0", network = "lan", address = "10.%s.%s.%s" }]\n' \
      "$i" "$((1 + i / 65536))" "$(((i / 256) % 256))" "$((i % 256))"
  done
} >"$work/topo.toml"
"$bin" flows "$work/net.toml" --amanda-config "$work/cfg" --hosts "$work/hosts" | grep -c '^#' >"$work/n1"
"$bin" flows "$work/topo.toml" | grep -c '^#' >"$work/n2"
cmp -s "$work/n1" "$work/n2" || { echo "the two deployments differ: $(cat "$work/n1") vs $(cat "$work/n2") flows" >&2; exit 1; }
row "plan --out, $n clients from amanda.conf+disklist" \
  "$(best "$bin" plan "$work/topo.toml" --out "$work/out1")" \
  "$(best "$bin" plan "$work/net.toml" --amanda-config "$work/cfg" --hosts "$work/hosts" --out "$work/out2")"
