#!/usr/bin/env bash
# Rollout benchmark (issue 14). Run as root from the repository root:
#
#   sudo bash bench/rollout.sh [BATCHES] [BACKENDS] [ROLLBACK_SECS]   # defaults: 10,50 nft 120
#
# Builds the real-Amanda lab for one server and 49 clients on one LAN (a
# network namespace, xinetd/amandad and an sshd per host), then from a control
# namespace rolls `amwall plan --ansible` out over real SSH with each batch size
# (serial), amcheck after every batch, and prints the wall time of each rollout
# and its ratio to `ansible all -m ping` over the same hosts in the same run.
# It is tests/rollout_bench.rs, an ignored test sharing tests/ansible.rs's
# fleet (tests/common/fleet.rs); `cargo test` never runs it. Namespaces and
# processes are removed when it ends, also on failure (the lab's Drop).
# Needs the packages .ci/run installs (Amanda 3.5.1, ansible, openssh-server).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces)" >&2; exit 2; }
AMWALL_BENCH_BATCHES=${1:-10,50} AMWALL_BENCH_BACKENDS=${2:-nft} AMWALL_BENCH_ROLLBACK=${3:-120} \
  cargo test -q --test rollout_bench -- --ignored --nocapture --test-threads=1
