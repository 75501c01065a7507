#!/usr/bin/env bash
# Installs the npm packages of the interop suite (tests/interop/package-lock.json).
exec "$(dirname "$0")/npm-deps.sh" tests/interop
