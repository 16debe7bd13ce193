# shellcheck shell=bash
# Shared by the scripts that run in stages (sourced): a timestamp for log lines, and
#   run_stages "data train evaluate" "$@"
# which runs stage_<name> for each name given on the command line (all, in order, when none
# is given) and refuses an unknown name with exit 2; and zoo_data, the zoo's data.

stamp() { date -u +%H:%M:%S; }

run_stages() {
    local known=$1 stage
    shift
    local stages=("$@")
    [ ${#stages[@]} -gt 0 ] || read -r -a stages <<< "$known"
    for stage in "${stages[@]}"; do
        if [[ " $known " != *" $stage "* ]]; then
            echo "unknown stage '$stage' (expected one of: $known)" >&2
            exit 2
        fi
        "stage_$stage"
    done
}

# The zoo's one protocol (ZOO.md): the training set (seed 11) and the held-out set (seed 9001)
# every zoo script trains and scores on, each simulated once under $RUN/data/ (deterministic,
# so an existing folder is that data already). Needs RUN and PYTHON.
zoo_data() {
    [ -d "$RUN/data/train" ] || "$PYTHON" -m lightmycells.simulate --out "$RUN/data/train" \
        --studies 12 --fovs 8 --seed 11 --size 512 --all-labels --quiet
    [ -d "$RUN/data/heldout" ] || "$PYTHON" -m lightmycells.simulate --out "$RUN/data/heldout" \
        --studies 12 --fovs 3 --seed 9001 --size 512 --all-labels --planes 3 --quiet
}
