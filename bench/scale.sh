#!/usr/bin/env bash
# Scale benchmark (issue 6). Run as root from the repository root:
#
#   sudo bash bench/scale.sh [SECONDS_PER_IPERF_RUN]
#
# For 10, 100, 1,000 and 10,000 clients it reports:
#   1. `amwall plan` wall time and peak memory (output on tmpfs, fresh directory);
#   2. kernel load time of the server's ruleset per backend in a namespace
#      (ipset restore + iptables-restore; nft -f);
#   1b. for 10,000 clients, `plan --ansible` (inventory, playbook, per-host files)
#      against `plan --out`, as a ratio;
# and for 10,000 clients:
#   3. one bulk TCP stream (iperf3) from the last client of the set to the server
#      through amwall's rules, alternated with runs through no firewall;
#   4. the same for FireHOL given the equivalent policy, and its compile time.
# Needs: iproute2 iptables nftables ipset iperf3 firehol python3 (installed below).
# Traffic stays in two namespaces on 192.0.2.0/24; nothing else is touched:
# FireHOL runs in a private mount namespace with a bind-mounted /etc/default/firehol.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}

need=()
for t in ip iptables-restore nft ipset iperf3 firehol python3; do
  command -v "$t" >/dev/null || need+=("$t")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq iproute2 iptables nftables ipset iperf3 firehol python3 >/dev/null
fi
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces)" >&2; exit 2; }

cargo build --release -q
bin=$PWD/target/release/amwall
work=$(mktemp -d /dev/shm/amwall-bench.XXXXXX)
pfx="amwb$$"
srv="$pfx-srv" cli="$pfx-cli" ldr="$pfx-load"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in "$srv" "$cli" "$ldr"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ms() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.0f}')" "$1" "$2"; }
now() { date +%s.%N; }

printf '\n== 1. plan time and memory; 2. kernel load time of the server ruleset ==\n'
printf '%8s %10s %10s %14s %14s %10s\n' clients plan_s peak_MB iptables+ipset nft rules
ip netns add "$ldr"
for n in 10 100 1000 10000; do
  topo="$work/t$n.toml"
  bench/gen-topology.sh "$n" > "$topo"
  out="$work/out$n"
  /usr/bin/time -f '%e %M' -o "$work/time$n" "$bin" plan "$topo" --out "$out" -q 2>/dev/null
  read -r secs_plan kb < "$work/time$n"
  ip netns exec "$ldr" nft flush ruleset
  ip netns exec "$ldr" ipset destroy 2>/dev/null || true
  t0=$(now)
  if [ -f "$out/server.ipset" ]; then ip netns exec "$ldr" ipset restore < "$out/server.ipset"; fi
  ip netns exec "$ldr" iptables-restore < "$out/server.rules"
  t1=$(now)
  ip netns exec "$ldr" nft -f "$out/server.nft"
  t2=$(now)
  rules=$(grep -c '^-A' "$out/server.rules")
  printf '%8s %10s %10s %12sms %12sms %10s\n' "$n" "$secs_plan" "$((kb / 1024))" "$(ms "$t0" "$t1")" "$(ms "$t1" "$t2")" "$rules"
done

printf '\n== 1b. plan --ansible (the Ansible project) against plan --out, 10,000 clients, best of 3 ==\n'
best() { sort -n | head -n 1; }
topo="$work/t10000.toml"
for mode in out ansible; do
  for i in 1 2 3; do
    rm -rf "$work/ab-$mode"
    /usr/bin/time -f '%e' -a -o "$work/ab-$mode.times" "$bin" plan "$topo" --"$mode" "$work/ab-$mode" -q >/dev/null 2>&1
  done
done
t_out=$(best < "$work/ab-out.times")
t_ans=$(best < "$work/ab-ansible.times")
printf '%10s %10s %8s %8s\n' out_s ansible_s ratio files
printf '%10s %10s %8s %8s\n' "$t_out" "$t_ans" "$(python3 -c "print(f'{$t_ans / $t_out:.2f}')")" "$(ls "$work/ab-ansible" | wc -l)"
rm -rf "$work/ab-out" "$work/ab-ansible"

printf '\n== 3./4. one TCP stream, last client of 10,000 -> server, %ss per run ==\n' "$secs"
ip netns add "$srv"
ip netns add "$cli"
ip -n "$srv" link set lo up
ip -n "$cli" link set lo up
ip -n "$srv" link add eth0 type veth peer name eth0 netns "$cli"
ip -n "$srv" addr add 192.0.2.1/24 dev eth0
ip -n "$cli" addr add 192.0.2.2/24 dev eth0
ip -n "$srv" link set eth0 up
ip -n "$cli" link set eth0 up
ip netns exec "$srv" iperf3 -s -p 50050 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

out="$work/out10000"
clear_fw() {
  ip netns exec "$srv" nft flush ruleset
  ip netns exec "$srv" iptables-legacy -F 2>/dev/null || true
  ip netns exec "$srv" iptables-legacy -X 2>/dev/null || true
  ip netns exec "$srv" iptables-legacy -P INPUT ACCEPT 2>/dev/null || true
  ip netns exec "$srv" iptables-legacy -P OUTPUT ACCEPT 2>/dev/null || true
  ip netns exec "$srv" iptables-legacy -P FORWARD ACCEPT 2>/dev/null || true
  ip netns exec "$srv" ipset destroy 2>/dev/null || true
}
gbps() {
  ip netns exec "$cli" iperf3 -c 192.0.2.1 -p 50050 -t "$secs" -J \
    | python3 -c 'import json,sys; r = json.load(sys.stdin); print("%.2f" % (r["end"]["sum_received"]["bits_per_second"] / 1e9))'
}
# FireHOL's equivalent policy: the data range from every client address.
addrs=$(awk -F'"' '/address/ && $6 != "192.0.2.1" {printf "%s ", $6}' "$work/t10000.toml")
mkdir -p "$work/fh"
cat > "$work/fh/firehol.conf" <<EOF
version 6
interface4 eth0 lan
    policy drop
    server custom amdata tcp/50000:50100 default accept src "$addrs"
EOF
sed 's/^START_FIREHOL=.*/START_FIREHOL=YES/' /etc/default/firehol > "$work/fh/default"
mkdir -p "$work/fh/spool"
firehol_start() {
  # Private mounts: FireHOL sees START_FIREHOL=YES and saves into our spool dir.
  ip netns exec "$srv" unshare -m sh -c \
    "mount --bind '$work/fh/default' /etc/default/firehol &&
     { [ ! -d /var/spool/firehol ] || mount --bind '$work/fh/spool' /var/spool/firehol; } &&
     firehol '$work/fh/firehol.conf' start" >"$work/fh/log" 2>&1 || { cat "$work/fh/log" >&2; return 1; }
}

declare -A sum cnt
run() { # label, setup...
  local label=$1; shift
  clear_fw
  "$@"
  local g; g=$(gbps)
  printf '  %-22s %6s Gbit/s\n' "$label" "$g"
  sum[$label]=$(python3 -c "print(${sum[$label]:-0} + $g)")
  cnt[$label]=$(( ${cnt[$label]:-0} + 1 ))
}
none() { :; }
amwall_nft() { ip netns exec "$srv" nft -f "$out/server.nft"; }
amwall_ipt() { ip netns exec "$srv" ipset restore < "$out/server.ipset"; ip netns exec "$srv" iptables-restore < "$out/server.rules"; }

t0=$(now); clear_fw; firehol_start; t1=$(now)
fh_rules=$(ip netns exec "$srv" iptables-legacy-save 2>/dev/null | grep -c '^-A' || true)
printf '  FireHOL compile+load for 10,000 clients: %s ms (%s iptables rules)\n' "$(ms "$t0" "$t1")" "$fh_rules"

for round in 1 2; do
  run "no firewall" none
  run "amwall nft" amwall_nft
  run "no firewall" none
  run "amwall iptables+ipset" amwall_ipt
  run "no firewall" none
  run "FireHOL" firehol_start
done
clear_fw

printf '\n  %-22s %8s %8s\n' setup "Gbit/s" "ratio"
base=$(python3 -c "print(${sum[no firewall]} / ${cnt[no firewall]})")
for k in "no firewall" "amwall nft" "amwall iptables+ipset" "FireHOL"; do
  avg=$(python3 -c "print(${sum[$k]} / ${cnt[$k]})")
  printf '  %-22s %8.2f %7.0f%%\n' "$k" "$avg" "$(python3 -c "print($avg / $base * 100)")"
done
