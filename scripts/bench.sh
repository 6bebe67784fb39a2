#!/usr/bin/env bash
# The benchmark suite: the release `switchboard` binary and its peers (the
# Node `ws` and Socket.IO hubs, the socketioxide hub) under the same load, one after the other in one run (ratios count on a
# noisy machine, single times do not). Not part of ./scripts/test.sh.
#
#   ./scripts/bench.sh                 # 10,000 connections
#   CONNECTIONS=2000 MEMORY_AT=1000,5000 ./scripts/bench.sh
#
# Tables go to bench/results/. Each process may hold at most `ulimit -n`
# files; the load client holds one per connection.
set -euo pipefail
cd "$(dirname "$0")/.."
connections="${CONNECTIONS:-10000}"

step() { printf '\n==> %s\n' "$*"; }

step "dependencies (Node for the peers, redis-server for the multi-node row)"
./scripts/install-deps.sh --node --redis

step "building the release binaries"
cargo build --release --locked -p switchboard-server -p switchboard-bench
(cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p bench/results

step "storm, room fill, fan-out, round trips, private messages: ${connections} connections (bench/results/scale.md)"
target/release/scale --connections "$connections" --out bench/results/scale.md --chart bench/results/scale.svg

step "memory per idle connection at ${MEMORY_AT:=1000,10000,19000} connections (bench/results/memory.md)"
target/release/memory --connections "$MEMORY_AT" --out bench/results/memory.md

step "room fan-out across nodes on Redis: 1 node alone, 1, 2 and 3 nodes on one Redis, 2 nodes on 2 Redis shards, 1 and 2 nodes on a 3-master Redis Cluster (bench/results/cluster.md)"
target/release/cluster --members "${CLUSTER_MEMBERS:-2000}" --out bench/results/cluster.md

step "room fan-out with and without permessage-deflate, beside the Node peers with theirs (bench/results/compression.md)"
target/release/compression --members "${COMPRESSION_MEMBERS:-1000}" --out bench/results/compression.md

step "room fan-out of bytes: binary messages, base64 text and both, against JSON text of the same size (bench/results/binary.md)"
target/release/binary --members "${BINARY_MEMBERS:-1000}" --out bench/results/binary.md
