#!/usr/bin/env bash
# Fuzz amwall's readers: `fuzz/run.sh [SECONDS] [TARGET...]` (default 600 s
# each, every target in turn). Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Each corpus lives in a temporary directory,
# seeded from fuzz/seeds/, the bundled examples and Amanda fixtures, and —
# for the iptables parser, when present — the real-world rulesets
# (AMWALL_REALWORLD or ../shared/rulesets/real-world; read in place, never
# copied into the repo). Exit non-zero on the first target that finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(iptables_parse nft_parse nft_json_parse topology_load amanda_config)
realworld=${AMWALL_REALWORLD:-../shared/rulesets/real-world}

seed() {
    local target=$1 corpus=$2
    [ -d fuzz/seeds/"$target" ] && cp fuzz/seeds/"$target"/* "$corpus"/
    case $target in
    iptables_parse)
        if [ -d "$realworld" ]; then
            for f in "$realworld"/*; do
                [ "$(basename "$f")" = SOURCE.md ] || cp "$f" "$corpus"/
            done
        fi ;;
    topology_load)
        cp examples/*.toml tests/fixtures/amanda/wiki-topology.toml "$corpus"/ ;;
    amanda_config)
        # amanda.conf, disklist, a.conf, b.conf, amanda-client.conf, hosts cut at `%%` lines.
        local w=tests/fixtures/amanda/wiki
        { sed 's/"dumptypes.conf"/"a.conf"/' "$w"/amanda.conf; printf '\n%%%%\n'
          cat "$w"/disklist; printf '\n%%%%\n'
          cat "$w"/dumptypes.conf; printf 'includefile "b.conf"\n%%%%\n'
          printf 'define dumptype extra {\n    auth "bsdtcp"\n}\n%%%%\n'
          cat "$w"/rhost/amanda-client.conf; printf '\n%%%%\n'
          printf '192.0.2.2 tshost\n192.0.2.3 lhost\n198.51.100.2 rhost\n'; } > "$corpus"/wiki
        ;;
    esac
}

for target in "${targets[@]}"; do
    corpus=$(mktemp -d /tmp/amwall-fuzz-"$target".XXXXXX)
    seed "$target" "$corpus"
    echo "== $target: $secs s, corpus $corpus"
    cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$secs" -max_len=65536
done
