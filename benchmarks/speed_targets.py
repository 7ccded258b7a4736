"""The project's own speed targets, for developers (users see `integral-cli bench`).

Runs the same timings as `integral-cli bench` and says, for each target, whether this
run met it. Targets are ratios measured in one run, so they hold on a busy machine;
CI does not run this (speed is measured, not tested).

    python benchmarks/speed_targets.py [--device cpu] [--batch 4096] [--repeat 7]
    python benchmarks/speed_targets.py --dims 3      # volumes: 256 of 64x64x48
"""

from __future__ import annotations

import argparse

from integral_cli.bench import (
    COMPARE,
    DARK_LOOP,
    DSNTNN,
    KORNIA,
    NOTE_GENERATOR,
    NOTE_MARGINAL,
    NUMPY_ARGMAX,
    QUARTER_LOOP,
    READ,
    RENDER,
    BenchConfig,
    run_bench,
)

#: (ours, theirs or the read floor, the ratio of speeds to reach)
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("argmax", NUMPY_ARGMAX, 1.0),
    ("argmax", READ, 0.4),
    ("argmax-quarter", QUARTER_LOOP, 3.0),
    ("argmax-quarter", READ, 0.3),
    ("dark", DARK_LOOP, 10.0),
    ("integral", KORNIA, 3.0),
    ("integral", DSNTNN, 1.2),
    ("integral-marginal", READ, 0.3),
    ("integral-marginal", NOTE_MARGINAL, 1.0),
    (RENDER, NOTE_GENERATOR, 20.0),
)
#: Every decoder runs at least this fraction of the read rate.
DECODER_READ_FRACTION = 0.2
#: Volumes (``--dims 3``): the same kind of ratios, on 256 volumes of 64x64x48.
VOLUME_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("argmax", READ, 0.4),
    ("integral", DSNTNN, 1.5),
    ("integral", READ, 0.2),
)
VOLUME_DECODER_READ_FRACTION = 0.15
#: compare end to end costs at most this many times rendering plus decoding.
COMPARE_OVERHEAD = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=None, help="default: 4096 maps, 256 volumes")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dims", type=int, default=2, choices=(2, 3))
    args = parser.parse_args()
    config = BenchConfig(device=args.device, batch=args.batch, repeat=args.repeat, dims=args.dims)
    result = run_bench(config)
    rows = {row["name"]: row for row in result["rows"]}
    volumes = args.dims == 3
    targets = VOLUME_TARGETS if volumes else TARGETS
    fraction_target = VOLUME_DECODER_READ_FRACTION if volumes else DECODER_READ_FRACTION
    checks = []
    for ours, theirs, target in targets:
        if ours in rows and theirs in rows:
            ratio = rows[ours]["maps_per_s"] / rows[theirs]["maps_per_s"]
            checks.append((ours, theirs, ratio, f">= {target:g}", ratio >= target))
    for row in result["rows"]:
        if row["kind"] == "decoder":
            fraction = row["read_fraction"]
            checks.append((row["name"], READ, fraction, f">= {fraction_target:g}", fraction >= fraction_target))
    if not volumes:
        parts = rows[RENDER]["median_s"] + sum(r["median_s"] for r in result["rows"] if r["kind"] == "decoder")
        cost = rows[COMPARE]["median_s"] / parts
        checks.append((COMPARE, "render + decoders", cost, f"<= {COMPARE_OVERHEAD:g}", cost <= COMPARE_OVERHEAD))
    what = "volumes of " + "x".join(map(str, config.size)) if volumes else "maps"
    print(
        f"device {result['device']} · torch {result['torch']} · {result['threads']} threads · "
        f"{config.batch} {what} · median of {args.repeat}"
    )
    for ours, theirs, ratio, target, met in checks:
        print(f"{ours:<22} vs {theirs:<36} {ratio:8.3f}  target {target:<7} {'met' if met else 'NOT MET'}")
    # the times themselves, which say what state a shared machine was in
    timed = [name for name in (READ, "argmax", "integral") if name in rows]
    print(" · ".join(f"{name} {rows[name]['median_s'] * 1e3:.3g} ms" for name in timed))


if __name__ == "__main__":
    main()
