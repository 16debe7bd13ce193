#!/usr/bin/env bash
# Build the container and save it as TAG.tar.gz, the file Grand Challenge's
# "Upload a container image" form takes.
# Usage: ./export.sh [TAG]         (default tag: lightmycells)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_TAG="${1:-lightmycells}"
ARCHIVE="$SCRIPT_DIR/${DOCKER_TAG//[:\/]/_}.tar.gz"

"$SCRIPT_DIR/build.sh" "$DOCKER_TAG"
docker save "$DOCKER_TAG" | gzip -c > "$ARCHIVE.tmp"
mv "$ARCHIVE.tmp" "$ARCHIVE"
echo "wrote $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1))"
