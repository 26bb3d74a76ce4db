#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing (Debian
# packages), so it works on a fresh machine that has only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"

apt_updated=0
install() { # install PACKAGE
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "test.sh: install the Debian package '$1' (needs root or sudo)" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  if [ "$apt_updated" = 0 ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}
need_command() { # need_command COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || install "$2"
}

need_command bwrap bubblewrap
need_command git git
need_command python3 python3
# Deployment tests run real load balancers and metrics servers.
need_command haproxy haproxy
need_command prometheus prometheus
# SARIF output is validated with PyPI's jsonschema in a virtualenv.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || install python3-venv

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
