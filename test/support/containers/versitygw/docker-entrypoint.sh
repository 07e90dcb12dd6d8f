#!/bin/sh
# As versity/versitygw's entry point: arguments run the gateway as given; otherwise VGW_BACKEND
# and VGW_BACKEND_ARG(S) name the backend and its directory.
set -e
BIN="${VGW_BINARY:-/usr/local/bin/versitygw}"
if [ "$#" -gt 0 ]; then exec "$BIN" "$@"; fi
if [ -z "${VGW_BACKEND:-}" ]; then
  echo "No command arguments were provided and VGW_BACKEND is unset." >&2
  exit 1
fi
# shellcheck disable=SC2086
exec "$BIN" ${VGW_ARGS:-} "$VGW_BACKEND" ${VGW_BACKEND_ARG:-} ${VGW_BACKEND_ARGS:-}
