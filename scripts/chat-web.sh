#!/usr/bin/env bash
# Serves the example chat (examples/chat-web) on http://127.0.0.1:5173 next
# to a hub on ws://127.0.0.1:8080/ws (start it with
# `cargo run --release -p switchboard-server`). Builds the npm package first.
#   PORT=5173 HUB=ws://127.0.0.1:8080/ws ./scripts/chat-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build-js.sh
(cd examples/chat-web && npm ci --no-audit --no-fund --loglevel=error)
port=${PORT:-5173}
echo "open http://127.0.0.1:${port}/?hub=${HUB:-ws://127.0.0.1:8080/ws}"
exec node examples/chat-web/serve.mjs --port "$port"
