#!/usr/bin/env bash
# Installs what building and testing Switchboard needs, skipping whatever is
# already there, so it is safe to run every time:
#   - rustfmt, clippy and the wasm32-unknown-unknown target (rustup);
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock, and
#     wasm-pack (cargo install; neither can download binaries here);
#   - with --browser: Debian's chromium and chromium-driver, and Node.js/npm;
#   - with --node: Node.js/npm only (the benchmark's peers);
#   - with --redis: Debian's redis-server (and redis-cli), which the
#     multi-node tests start on free loopback ports of their own;
#   - with --schemathesis: schemathesis (PyPI, pinned) in a virtualenv under
#     ~/.cache/switchboard, which fuzzes the HTTP API from its OpenAPI document;
#   - python3, for the example webhook backend the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."

browser=false
node=false
redis=false
schemathesis=false
for arg in "$@"; do
    case "$arg" in
        --browser) browser=true; node=true ;;
        --node) node=true ;;
        --redis) redis=true ;;
        --schemathesis) schemathesis=true ;;
    esac
done

say() { printf '  - %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "need root to run: $*" >&2
        return 1
    fi
}

apt_updated=false
apt_install() {
    if ! $apt_updated; then
        as_root apt-get update -qq
        apt_updated=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi

if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^${component}" || {
            say "rustup component add ${component}"
            rustup component add "${component}"
        }
    done
    rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || {
        say "rustup target add wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown
    }
fi

# The CLI must match the library version exactly, or wasm-bindgen refuses.
wanted=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$wanted" ]; then
    say "cargo install wasm-bindgen-cli ${wanted} (found: ${have:-none})"
    # Its own lockfile may name a crate version the registry no longer
    # serves; then resolve afresh within the same semver ranges.
    cargo install --quiet wasm-bindgen-cli --version "$wanted" --locked --force \
        || cargo install --quiet wasm-bindgen-cli --version "$wanted" --force
fi
if ! command -v wasm-pack >/dev/null 2>&1; then
    say "cargo install wasm-pack"
    cargo install --quiet wasm-pack --locked || cargo install --quiet wasm-pack
fi

if $browser; then
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        say "apt-get install chromium chromium-driver"
        apt_install chromium chromium-driver
    fi
fi

if $node; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "apt-get install nodejs npm"
        apt_install nodejs npm
    fi
fi

# The webhook example backend the tests run is Python (standard library).
if ! command -v python3 >/dev/null 2>&1; then
    say "apt-get install python3"
    apt_install python3
fi

if $redis; then
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        say "apt-get install redis-server"
        apt_install redis-server
    fi
fi

# The API fuzzer, pinned, in a virtualenv of its own (Debian's Python is
# externally managed: no system-wide pip installs).
SCHEMATHESIS_VERSION=4.32.5
if $schemathesis; then
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/schemathesis-${SCHEMATHESIS_VERSION}"
    if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
            say "apt-get install python3-venv"
            apt_install python3-venv
        fi
        say "pip install schemathesis==${SCHEMATHESIS_VERSION} (into $venv)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
    fi
fi
