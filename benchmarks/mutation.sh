#!/usr/bin/env bash
# Mutation testing of the decoders, the coordinate conventions, the metrics, the report
# writer and the resume/merge code of the sweeps (issue 21). Slow (tens of minutes on a
# 2-core machine), so not part of CI: run it by hand, e.g.
#
#     nohup bash benchmarks/mutation.sh > mutation.log 2>&1 &
#
# from a fresh clone. It installs torch (the CPU build), the package with its test and
# mutation extras, runs mutmut with one worker process and one thread, and prints the
# score of every module (killed / total) with the surviving mutants. Options:
#   --no-install   use the current environment as it is
#   --recheck      keep the results in mutants/ and run again only the mutants that
#                  survived there (and those of functions whose code changed): after
#                  adding tests, the killed ones stay killed
# Exit status: 0 when every survivor is documented as equivalent below, 1 otherwise.
#
# What is mutated and by which tests: [tool.mutmut] in pyproject.toml. Every function of
# integral_cli/decoders/, coords.py, metrics.py and report.py; of sweep.py only Shard,
# configuration_key, setting_differences, read_sweep_sidecar, _resumable and
# merge_results (TARGETS below: mutmut mutates the whole file, the run is narrowed by
# mutant name). The tests are the unit tests of those modules and tests/test_reliability.py
# (resume, merge, shards); the end-to-end tests of the CLI, experiment, fit and evaluate
# are left out of the run, as they would cost minutes for every surviving mutant.
# mutmut reruns only the tests that reach the mutated function.
#
# Notes: surviving mutants judged equivalent, one line each on why no result can change.
# Format (read by benchmarks/mutation_score.py): "# equivalent: NAME -- why". The numbers
# are mutmut's for the code as it is; a change to a function renumbers its mutants, and
# the score script then lists the notes that no longer name a survivor.
#
# (none yet)

set -euo pipefail
cd "$(dirname "$0")/.."

install=1
recheck=0
for argument in "$@"; do
    case "$argument" in
        --no-install) install=0 ;;
        --recheck) recheck=1 ;;
        *) echo "unknown option $argument" >&2; exit 2 ;;
    esac
done

if [ "$install" = 1 ]; then
    # the CPU build first: a plain torch requirement would pull the multi-GB CUDA build
    python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
    python -m pip install --quiet --disable-pip-version-check -e ".[test,mutation]"
fi

# mutmut forks a worker per mutant from a process that has run the tests: with one
# thread torch starts no thread pool that a fork could leave locked, and the run keeps
# to one core, beside the single worker (--max-children 1).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

TARGETS=(
    "integral_cli.decoders.*"
    "integral_cli.coords.*"
    "integral_cli.metrics.*"
    "integral_cli.report.*"
    "integral_cli.sweep.xǁShardǁ*"
    "integral_cli.sweep.x_configuration_key__mutmut_*"
    "integral_cli.sweep.x_setting_differences__mutmut_*"
    "integral_cli.sweep.x_read_sweep_sidecar__mutmut_*"
    "integral_cli.sweep.x__resumable__mutmut_*"
    "integral_cli.sweep.x_merge_results__mutmut_*"
)

if [ "$recheck" = 1 ]; then
    [ -d mutants ] || { echo "--recheck needs the mutants/ of an earlier run" >&2; exit 2; }
    python benchmarks/mutation_score.py --prepare-recheck
    names=()  # mutmut runs every unchecked mutant, which are now the ones to recheck
else
    rm -rf mutants
    names=("${TARGETS[@]}")
fi
started=$(date +%s)
echo "mutation run started $(date -u +%FT%TZ); progress in mutants/run.log" >&2
mkdir -p mutants
# mutmut's exit status says nothing about the mutants; the score below does
python -m mutmut run --max-children 1 "${names[@]}" > mutants/run.log 2>&1 || {
    tail -n 40 mutants/run.log >&2
    echo "mutmut failed (see mutants/run.log)" >&2
    exit 2
}
echo "finished in $(( $(date +%s) - started )) s" >&2
python benchmarks/mutation_score.py
