#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing (Debian
# packages), so it works on a fresh machine that has only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"

apt_updated=0
need_package() { # need_package COMMAND PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
      echo "test.sh: '$1' is missing; install the Debian package '$2'" >&2
      exit 1
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    if [ "$apt_updated" = 0 ]; then
      $sudo apt-get update -qq
      apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
  fi
}

need_package bwrap bubblewrap
need_package git git

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet
