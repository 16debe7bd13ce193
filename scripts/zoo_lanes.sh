# shellcheck shell=bash
# Shared by the zoo scripts (scripts/zoo_issue*.sh, which source this file): timestamps and
# the two training lanes. A lane item is "name|config|overrides"; the caller sets RUN, STEPS,
# PYTHON and the arrays LANE_A, LANE_B. An item's own "--steps N" among its overrides wins
# over STEPS (the last --steps on the command line counts).

# shellcheck source=scripts/stages.sh
source "$(dirname "${BASH_SOURCE[0]}")/stages.sh"

run_lane() {
    local item name config sets
    for item in "$@"; do
        IFS='|' read -r name config sets <<< "$item"
        echo "[$(stamp)] start $name"
        # shellcheck disable=SC2086  # $sets holds separate words
        nice -n 10 "$PYTHON" -m lightmycells.train --config "$config" \
            --set "data.roots=[$RUN/data/train]" --set "out=$RUN/$name" --steps "$STEPS" \
            $sets > "$RUN/$name.log" 2>&1
        echo "[$(stamp)] end $name: $(tail -n 1 "$RUN/$name.log")"
    done
}

train_lanes() {  # LANE_A and LANE_B side by side, one torch thread each
    mkdir -p "$RUN"
    run_lane "${LANE_A[@]}" &
    local a=$!
    run_lane "${LANE_B[@]}" &
    local b=$!
    wait "$a"
    wait "$b"
}
