#!/usr/bin/env bash
# gen-topology.sh N: a topology with one server and N clients that all back up
# and recover over bsd auth. The first N-1 clients get 10.x.y.z addresses (they
# only ever appear in rules); the last client is 192.0.2.2 so that the
# throughput benchmark can put it in a namespace (documentation range only).
# legacy-recover adds amoldrecover's data flow (client -> server tcp 50000-50100
# from any source port): iperf3's control connection comes from an ephemeral
# port, so the bulk stream needs an opening without a source-port constraint.
set -euo pipefail
n=${1:?usage: gen-topology.sh N}
cat <<HEAD
[amanda]
auth = "bsd"
client-port = 10080
legacy-recover = true

[management]
from = ["192.0.2.0/24"]

[[network]]
name = "all"
cidr = "0.0.0.0/0"

[[host]]
name = "server"
roles = ["server"]
interfaces = [{ name = "eth0", network = "all", address = "192.0.2.1" }]
HEAD
awk -v n="$n" 'BEGIN {
  for (i = 1; i < n; i++) {
    k = i - 1; rest = int(k / 254)     # last octet 1-254: no .0 or .255
    printf "\n[[host]]\nname = \"c%d\"\nroles = [\"client\", \"recover\"]\ninterfaces = [{ name = \"eth0\", network = \"all\", address = \"10.%d.%d.%d\" }]\n", i, int(rest / 256), rest % 256, k % 254 + 1
  }
  printf "\n[[host]]\nname = \"c%d\"\nroles = [\"client\", \"recover\"]\ninterfaces = [{ name = \"eth0\", network = \"all\", address = \"192.0.2.2\" }]\n", n
}'
