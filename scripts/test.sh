#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what it needs first,
# idempotently, so it passes on a fresh machine with only rustup/cargo present.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi

step "toolchain components"
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^${component}" \
            || rustup component add "${component}"
    done
fi

step "wasm32 target"
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -q '^wasm32-unknown-unknown$' \
        || rustup target add wasm32-unknown-unknown
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the protocol crate builds for wasm32"
cargo build -p switchboard-protocol --target wasm32-unknown-unknown --locked

step "cargo test (unit, protocol fixtures, end-to-end over loopback, doc tests)"
cargo test --workspace --locked
