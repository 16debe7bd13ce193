#!/usr/bin/env bash
# Run the container as Grand Challenge does (no network, read-only /input, limited memory)
# on test/input and compare what it writes with test/expected_output.
# Usage: ./test.sh [TAG]           (default tag: lightmycells; GPUS=none to force the CPU)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_TAG="${1:-lightmycells}"
INPUT_DIR="$SCRIPT_DIR/test/input"
EXPECTED_DIR="$SCRIPT_DIR/test/expected_output"
OUTPUT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/lightmycells-test.XXXXXX")"

cleanup() {
    # The container's user owns what it wrote; remove it from inside a container.
    docker run --rm --network none --volume "$OUTPUT_DIR":/output --entrypoint /bin/sh \
        "$DOCKER_TAG" -c "rm -rf /output/* /output/.[!.]*" || true
    rmdir "$OUTPUT_DIR" 2>/dev/null || true
}
trap cleanup EXIT

"$SCRIPT_DIR/build.sh" "$DOCKER_TAG"
chmod 777 "$OUTPUT_DIR"

GPU_ARGS=()
if [[ "${GPUS:-auto}" != "none" ]] && command -v nvidia-smi > /dev/null 2>&1; then
    GPU_ARGS=(--gpus all)
fi

# ${GPU_ARGS[@]+...}: an empty array under `set -u` is an error in bash 3 (macOS)
docker run --rm ${GPU_ARGS[@]+"${GPU_ARGS[@]}"} \
    --platform=linux/amd64 \
    --network none \
    --memory=16g --shm-size=128m --pids-limit=256 \
    --volume "$INPUT_DIR":/input:ro \
    --volume "$OUTPUT_DIR":/output \
    "$DOCKER_TAG"

docker run --rm --network none \
    --volume "$OUTPUT_DIR":/output:ro \
    --volume "$EXPECTED_DIR":/expected:ro \
    --entrypoint python \
    "$DOCKER_TAG" -m lightmycells.eval.compare /output /expected
echo "test.sh: outputs match test/expected_output"
