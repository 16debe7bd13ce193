#!/usr/bin/env bash
# Build the inference container for linux/amd64 (Grand Challenge's platform).
# Usage: ./build.sh [TAG]          (default tag: lightmycells)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_TAG="${1:-lightmycells}"

if [[ ! -f "$SCRIPT_DIR/weights/manifest.json" ]]; then
    echo "error: $SCRIPT_DIR/weights/manifest.json is missing; the container bakes in weights/" >&2
    exit 2
fi

docker build --platform=linux/amd64 --tag "$DOCKER_TAG" "$SCRIPT_DIR"
