"""The project's own speed targets, for developers (users see `integral-cli bench`).

Runs the same timings as `integral-cli bench` and says, for each target, whether this
run met it. Targets are ratios measured in one run, so they hold on a busy machine;
CI does not run this (speed is measured, not tested).

    python benchmarks/speed_targets.py [--device cpu] [--batch 4096] [--repeat 7]
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
#: compare end to end costs at most this many times rendering plus decoding.
COMPARE_OVERHEAD = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    result = run_bench(BenchConfig(device=args.device, batch=args.batch, repeat=args.repeat))
    rows = {row["name"]: row for row in result["rows"]}
    checks = []
    for ours, theirs, target in TARGETS:
        if ours in rows and theirs in rows:
            ratio = rows[ours]["maps_per_s"] / rows[theirs]["maps_per_s"]
            checks.append((ours, theirs, ratio, f">= {target:g}", ratio >= target))
    for row in result["rows"]:
        if row["kind"] == "decoder":
            fraction = row["read_fraction"]
            checks.append(
                (row["name"], READ, fraction, f">= {DECODER_READ_FRACTION:g}", fraction >= DECODER_READ_FRACTION)
            )
    parts = rows[RENDER]["median_s"] + sum(r["median_s"] for r in result["rows"] if r["kind"] == "decoder")
    cost = rows[COMPARE]["median_s"] / parts
    checks.append((COMPARE, "render + decoders", cost, f"<= {COMPARE_OVERHEAD:g}", cost <= COMPARE_OVERHEAD))
    print(
        f"device {result['device']} · torch {result['torch']} · {result['threads']} threads · "
        f"{args.batch} maps · median of {args.repeat}"
    )
    for ours, theirs, ratio, target, met in checks:
        print(f"{ours:<22} vs {theirs:<36} {ratio:8.3f}  target {target:<7} {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
