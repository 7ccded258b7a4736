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
# Exit status: 0 when every survivor has a note below, 1 otherwise.
#
# What is mutated and by which tests: [tool.mutmut] in pyproject.toml. Every function of
# integral_cli/decoders/, coords.py, metrics.py and report.py; of sweep.py only Shard,
# configuration_key, setting_differences, read_sweep_sidecar, _resumable and
# merge_results (`targets` below: mutmut mutates the whole file, the run is narrowed by
# mutant name). The tests are the unit tests of those modules, tests/test_reliability.py
# (resume, merge, shards) and tests/test_full_disk.py (failed writes, cut rows); the
# end-to-end tests of the CLI, experiment, fit and evaluate are left out of the run, as
# they would cost minutes for every surviving mutant.
# mutmut reruns only the tests that reach the mutated function.
#
# Scores (killed / total; killed includes timeouts). Before: the tests as they were when
# this script came (commit 6307484). After: the same code with the tests added beside
# each module, survivors rechecked with --recheck.
#   module                 before              after
#   coords.py              93/116  80.2%       115/116  99.1%
#   decoders/__init__.py   55/68   80.9%        65/68   95.6%
#   decoders/argmax.py    137/153  89.5%       146/153  95.4%
#   decoders/common.py    248/283  87.6%       267/283  94.3%
#   decoders/dark.py      550/644  85.4%       607/644  94.3%
#   decoders/integral.py  298/352  84.7%       330/357  92.4%
#   metrics.py            118/143  82.5%       136/143  95.1%
#   report.py             121/193  62.7%       181/193  93.8%
#   sweep.py (resume/merge) 250/387 64.6%      377/387  97.4%
#   all                  1870/2339 79.9%      2224/2344 94.9%
# (every survivor of the "after" run is equivalent or an accelerator-only mutant). A full
# run from a fresh clone after the settings-table restructuring took 41 minutes.
#
# A run on the merged code (SimCC and volumes in, 5445 mutants, 56 minutes) found the
# decoders of SimCC and volumes untested here: their test files were not in the
# selection, so simcc.py scored 0%, volume_dark.py 18.5% and volume.py 49.4%. With
# tests/test_volume_decoders.py and tests/test_simcc_decoders.py added (a run of those
# three modules alone, two workers, 4 minutes): volume.py 665/781 (85.1%),
# volume_dark.py 472/523 (90.2%), simcc.py 446/520 (85.8%); one survivor, the shifted
# weights of the debiased integral under autograd, then got the gradient test of
# volumes. Still to judge: those modules' survivors, the survivors of functions changed
# since the notes below (they renumber), and the mutants of coords.py, metrics.py and
# registry.py that no test in the selection reaches ("other" in the score: code for
# SimCC and volumes tested elsewhere).
#
# Notes: every surviving mutant, one line each on why it is left. Format (read by
# benchmarks/mutation_score.py): "# TAG: NAME -- why". The numbers are mutmut's for the
# code as it is; a change to a function renumbers its mutants, and the score script
# then lists the notes that no longer name a survivor and the survivors with no note.
#
# Tags: "equivalent" cannot change any result; "accelerator" changes a result only off
# the CPU (a tensor made on the CPU meets the maps on a GPU and raises), which these
# CPU-only tests cannot see; the meta-device tests catch those of the functions that run
# there. Recurring reasons: every decoder gets (B, K, H, W) maps, so dimension +2 is -2
# ("4-D"); a mutant that only picks between two paths that give the same numbers is a
# speed change ("same numbers").
#
# coords.py
# equivalent: integral_cli.coords.x_heatmap_size__mutmut_6 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.coords.x_heatmap_size__mutmut_9 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.coords.x_heatmap_size__mutmut_14 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.coords.x_heatmap_size__mutmut_28 -- on the error path the stride is >= 2, so `below` is 0 or >= 2: > 1 is > 0
# equivalent: integral_cli.coords.x_heatmap_to_image__mutmut_14 -- two different scales come only from udp, whose offset is 0
# equivalent: integral_cli.coords.x_image_to_heatmap__mutmut_13 -- two different scales come only from udp, whose offset is 0
# decoders/argmax.py
# equivalent: integral_cli.decoders.argmax.x_flat_argmax__mutmut_4 -- never the numpy path: torch's argmax gives the same index (same numbers)
# equivalent: integral_cli.decoders.argmax.x_flat_argmax__mutmut_5 -- never the numpy path: torch's argmax gives the same index (same numbers)
# equivalent: integral_cli.decoders.argmax.x_get_heatmap_maximum__mutmut_6 -- 4-D
# equivalent: integral_cli.decoders.argmax.x_get_heatmap_maximum__mutmut_30 -- torch.stack promotes the int64 half to the other half's float dtype
# equivalent: integral_cli.decoders.argmax.x_get_heatmap_maximum__mutmut_32 -- torch.stack promotes the int64 half to the other half's float dtype
# equivalent: integral_cli.decoders.argmax.x_refine_quarter_offset__mutmut_2 -- 4-D
# equivalent: integral_cli.decoders.argmax.x_refine_quarter_offset__mutmut_63 -- steps of 0 and +-1/4 are exact in any float dtype; the sum takes coords' dtype
# decoders/common.py
# equivalent: integral_cli.decoders.common.x__gather_clamped__mutmut_2 -- 4-D
# equivalent: integral_cli.decoders.common.x__gather_clamped__mutmut_55 -- 4-D
# equivalent: integral_cli.decoders.common.x__gather_clamped__mutmut_60 -- the index is 4-D on this path
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_3 -- 4-D
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_11 -- a patch larger than the map crosses its border wherever it is: 100% crossing takes the index path first
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_39 -- the crossing share only picks the path (same numbers)
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_40 -- the crossing share only picks the path (same numbers)
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_64 -- 4-D
# accelerator: integral_cli.decoders.common.x_gather_patches__mutmut_73 -- batch index made on the CPU
# accelerator: integral_cli.decoders.common.x_gather_patches__mutmut_75 -- batch index made on the CPU
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_77 -- unsqueeze of a 1-D arange: +1 is -1
# accelerator: integral_cli.decoders.common.x_gather_patches__mutmut_81 -- keypoint index made on the CPU
# accelerator: integral_cli.decoders.common.x_gather_patches__mutmut_83 -- keypoint index made on the CPU
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_86 -- only crossing patches start outside, and they are read again pixel by pixel
# equivalent: integral_cli.decoders.common.x_gather_patches__mutmut_93 -- only crossing patches start outside, and they are read again pixel by pixel
# equivalent: integral_cli.decoders.common.x_pixel_indices__mutmut_16 -- only non-finite points move, their result is NaN whatever is read, and reads are clamped into the map
# decoders/dark.py
# accelerator: integral_cli.decoders.dark.x__band_matrix__mutmut_9 -- band rows made on the CPU
# accelerator: integral_cli.decoders.dark.x__band_matrix__mutmut_11 -- band rows made on the CPU
# equivalent: integral_cli.decoders.dark.x__band_matrix__mutmut_17 -- unsqueeze of a 1-D arange: +1 is -1
# accelerator: integral_cli.decoders.dark.x__band_matrix__mutmut_22 -- band columns made on the CPU
# accelerator: integral_cli.decoders.dark.x__band_matrix__mutmut_24 -- band columns made on the CPU
# equivalent: integral_cli.decoders.dark.x__edge_reindex__mutmut_6 -- the neighbourhood is square
# accelerator: integral_cli.decoders.dark.x__edge_reindex__mutmut_12 -- steps made on the CPU
# accelerator: integral_cli.decoders.dark.x__edge_reindex__mutmut_15 -- steps made on the CPU
# equivalent: integral_cli.decoders.dark.x__edge_reindex__mutmut_55 -- the neighbourhood is square
# equivalent: integral_cli.decoders.dark.x__edge_reindex__mutmut_64 -- cols is 3-D: unsqueeze(+2) is unsqueeze(-2)
# equivalent: integral_cli.decoders.dark.x__edge_reindex__mutmut_66 -- 4-D
# equivalent: integral_cli.decoders.dark.x__edge_reindex__mutmut_74 -- 4-D
# equivalent: integral_cli.decoders.dark.x_decode_dark__mutmut_7 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_decode_dark__mutmut_11 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_decode_dark_udp__mutmut_7 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_decode_dark_udp__mutmut_11 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_1 -- DARK, the one caller on the default, reads the +-2 neighbourhood of interior maxima only, where nothing is outside to repeat
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_3 -- 4-D
# accelerator: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_8 -- kernel made on the CPU
# accelerator: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_11 -- kernel made on the CPU
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_45 -- 4-D
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_68 -- float("INF") is float("inf")
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_69 -- 4-D
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_76 -- a map whose maximum is 0 blurs to <= 0 < floor: the fast path is refused either way
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_78 -- lowest exactly at the floor: the clip changes nothing, both paths give the same numbers
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_79 -- peak exactly at the ceiling: the clip changes nothing, both paths give the same numbers
# equivalent: integral_cli.decoders.dark.x_modulated_log_neighbourhood__mutmut_123 -- the flattened maps are 2-D: +1 is -1
# equivalent: integral_cli.decoders.dark.x_refine_dark__mutmut_6 -- 4-D
# equivalent: integral_cli.decoders.dark.x_refine_dark__mutmut_33 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_refine_dark__mutmut_41 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_refine_dark__mutmut_114 -- det is replaced only where no step is taken and the offset is discarded; 2 keeps it as finite as 1
# equivalent: integral_cli.decoders.dark.x_refine_dark__mutmut_131 -- coords come from get_heatmap_maximum in the working dtype already
# equivalent: integral_cli.decoders.dark.x_refine_dark_udp__mutmut_16 -- `active` only lets maps whose result is NaN skip the whole-map blur (same numbers)
# equivalent: integral_cli.decoders.dark.x_refine_dark_udp__mutmut_17 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_refine_dark_udp__mutmut_26 -- `active` only lets maps whose result is NaN skip the whole-map blur (same numbers)
# equivalent: integral_cli.decoders.dark.x_refine_dark_udp__mutmut_27 -- without the maxima handed in, the same maxima are computed from the same maps
# equivalent: integral_cli.decoders.dark.x_refine_dark_udp__mutmut_98 -- coords come from get_heatmap_maximum in the working dtype already
# decoders/integral.py
# equivalent: integral_cli.decoders.integral.x_decode_integral__mutmut_3 -- beta * h with beta 1 is h exactly
# equivalent: integral_cli.decoders.integral.x_decode_integral__mutmut_6 -- 4-D (whole batches and blocks alike)
# equivalent: integral_cli.decoders.integral.x_decode_integral__mutmut_12 -- 4-D (whole batches and blocks alike)
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_7 -- beta * h with beta 1 is h exactly
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_13 -- out of place instead of in place: same values
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_20 -- overflowing maps are weighed as (n, 1, H, W): flattening from 1 or 2 is the same
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_21 -- overflowing maps are weighed as (n, 1, H, W): flattening from 1 or 2 is the same
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_27 -- beta * h with beta 1 is h exactly
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_35 -- on this path the background term is below exp(-88) of the largest weight: under float resolution whatever its factor
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_50 -- the weights are 2-D here: +1 is -1
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_51 -- on this path the background term is below exp(-88) of the largest weight: under float resolution whatever its factor
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_55 -- out of place instead of in place: same values
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_56 -- on this path the background term is below exp(-88) of the largest weight: under float resolution whatever its sign
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_72 -- 4-D
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_73 -- a larger overflow factor only sends maps near the float limit to the overflow path, which computes the same expectation
# equivalent: integral_cli.decoders.integral.x_decode_integral_debiased__mutmut_84 -- those maps' sums are replaced by the overflow path's right after; 1 keeps exp finite as 0 does
# equivalent: integral_cli.decoders.integral.x_decode_integral_marginal__mutmut_7 -- 4-D
# equivalent: integral_cli.decoders.integral.x_decode_soft_argmax_local__mutmut_28 -- 4-D
# equivalent: integral_cli.decoders.integral.x_decode_soft_argmax_local__mutmut_55 -- 4-D
# equivalent: integral_cli.decoders.integral.x_decode_soft_argmax_local__mutmut_66 -- 4-D
# equivalent: integral_cli.decoders.integral.x_weight_marginals__mutmut_15 -- one call or blocks: each map is weighed on its own either way (same numbers)
# equivalent: integral_cli.decoders.integral.x_weight_marginals__mutmut_16 -- one call or blocks: each map is weighed on its own either way (same numbers)
# equivalent: integral_cli.decoders.integral.x_weight_marginals__mutmut_17 -- one call or blocks: each map is weighed on its own either way (same numbers)
# equivalent: integral_cli.decoders.integral.x_weight_marginals__mutmut_21 -- 4-D
# equivalent: integral_cli.decoders.integral.x_weight_marginals__mutmut_49 -- blocks starting at every map overlap and rewrite the same sums (same numbers)
# equivalent: integral_cli.decoders.integral.x_weight_marginals__mutmut_61 -- the blocks are 4-D
# decoders/registry.py
# equivalent: integral_cli.decoders.registry.x_check_kernel_size__mutmut_17 -- the isinstance check before it has already required an int
# equivalent: integral_cli.decoders.registry.x_check_kernel_size__mutmut_22 -- the isinstance check before it has already required an int
# equivalent: integral_cli.decoders.registry.x_check_kernel_size__mutmut_26 -- the isinstance check before it has already required an int
# metrics.py
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_4 -- reached only for 2-D offsets: +1 is -1
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_16 -- the offsets are 2-D: +1 is -1
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_34 -- float("NAN") is float("nan")
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_43 -- the offsets are 2-D: +1 is -1
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_87 -- the fields and the statistics have the same length by construction
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_90 -- the fields and the statistics have the same length by construction
# equivalent: integral_cli.metrics.x_summarize_offsets__mutmut_93 -- the fields and the statistics have the same length by construction
# report.py
# equivalent: integral_cli.report.x__parse_results__mutmut_62 -- a row with nothing in it has no time either, which the other half catches
# equivalent: integral_cli.report.x_append_rows__mutmut_4 -- pandas writes no index for a false index=None
# equivalent: integral_cli.report.x_append_rows__mutmut_12 -- codec names are case-insensitive
# equivalent: integral_cli.report.x_drop_cut_row__mutmut_20 -- codec names are case-insensitive
# equivalent: integral_cli.report.x_drop_cut_row__mutmut_27 -- codec names are case-insensitive
# equivalent: integral_cli.report.x_read_results__mutmut_4 -- the tool's CSVs are ASCII; UTF-8 is the locale encoding wherever Python coerces the C locale
# equivalent: integral_cli.report.x_read_results__mutmut_6 -- codec names are case-insensitive
# equivalent: integral_cli.report.x_read_sidecar__mutmut_5 -- the tool's sidecars are ASCII (json.dumps escapes the rest)
# equivalent: integral_cli.report.x_read_sidecar__mutmut_7 -- codec names are case-insensitive
# equivalent: integral_cli.report.x_remedy__mutmut_13 -- errno 1 (EPERM) has no remedy of its own either
# equivalent: integral_cli.report.x_rows_as_records__mutmut_6 -- pandas lower-cases orient
# equivalent: integral_cli.report.x_write_csv__mutmut_11 -- pandas writes no index for a false index=None
# equivalent: integral_cli.report.x_write_csv__mutmut_17 -- codec names are case-insensitive
# equivalent: integral_cli.report.x_write_json__mutmut_14 -- codec names are case-insensitive
# sweep.py
# equivalent: integral_cli.sweep.x__resumable__mutmut_80 -- pandas lower-cases orient
# equivalent: integral_cli.sweep.x__resumable__mutmut_116 -- pandas lower-cases orient
# equivalent: integral_cli.sweep.x_merge_results__mutmut_38 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.sweep.x_merge_results__mutmut_41 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.sweep.x_merge_results__mutmut_44 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.sweep.x_merge_results__mutmut_48 -- None is as false as False
# equivalent: integral_cli.sweep.x_merge_results__mutmut_76 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.sweep.x_merge_results__mutmut_79 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.sweep.x_merge_results__mutmut_80 -- the zipped sequences have the same length by construction (checked upstream)
# equivalent: integral_cli.sweep.x_merge_results__mutmut_95 -- pandas lower-cases orient
# equivalent: integral_cli.sweep.x_merge_results__mutmut_134 -- the index is reset after sorting anyway
# equivalent: integral_cli.sweep.x_merge_results__mutmut_136 -- the index is reset after sorting anyway
# equivalent: integral_cli.sweep.x_merge_results__mutmut_137 -- the index is reset after sorting anyway
# equivalent: integral_cli.sweep.x_merge_results__mutmut_151 -- pandas lower-cases orient
# equivalent: integral_cli.sweep.x_merge_results__mutmut_153 -- the old index comes back as a column, which the CSV's fixed columns leave out
# equivalent: integral_cli.sweep.x_merge_results__mutmut_159 -- the old index comes back as a column, which the CSV's fixed columns leave out

set -euo pipefail

# Everything runs from this function, so that bash has read the whole script before the
# long run starts: editing the script (its notes) meanwhile cannot derail it.
main() {
    cd "$(dirname "$0")/.."

    local install=1 recheck=0 argument
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

    local targets=(
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
    local names=()
    if [ "$recheck" = 1 ]; then
        [ -d mutants ] || { echo "--recheck needs the mutants/ of an earlier run" >&2; exit 2; }
        python benchmarks/mutation_score.py --prepare-recheck
        # mutmut runs every unchecked mutant, which are now the ones to recheck
    else
        rm -rf mutants
        names=("${targets[@]}")
    fi
    local started
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
}

main "$@"
