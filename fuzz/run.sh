#!/usr/bin/env bash
# Fuzz one parser: `fuzz/run.sh iptables_parse 600` (seconds). Needs a nightly
# toolchain and cargo-fuzz. The corpus lives in a temporary directory, seeded
# from fuzz/seeds/ and, when present, the real-world rulesets beside the repo
# (../shared/rulesets/real-world/: read in place, never copied into the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?target: iptables_parse, nft_parse or nft_json_parse}
secs=${2:-600}
corpus=$(mktemp -d /tmp/amwall-fuzz-"$target".XXXXXX)
cp fuzz/seeds/"$target"/* "$corpus"/
if [ "$target" = iptables_parse ] && [ -d ../shared/rulesets/real-world ]; then
    for f in ../shared/rulesets/real-world/*; do
        [ "$(basename "$f")" = SOURCE.md ] || cp "$f" "$corpus"/
    done
fi
echo "corpus: $corpus"
cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$secs" -max_len=65536
