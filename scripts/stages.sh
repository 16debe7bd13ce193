# shellcheck shell=bash
# Shared by the scripts that run in stages (sourced): a timestamp for log lines, and
#   run_stages "data train evaluate" "$@"
# which runs stage_<name> for each name given on the command line (all, in order, when none
# is given) and refuses an unknown name with exit 2.

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
