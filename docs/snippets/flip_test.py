"""The flip test's bias in x, in image pixels: measured (integral-l1 reads the mean of
the averaged output's two peaks) against the closed form, for heatmaps at stride 4 and
SimCC vectors at split ratio 2.

With ``r`` output units per image pixel (``1/s`` for heatmaps, ``k`` for SimCC) and bin
``b = r·x + c``, the flipped-back peak sits at ``r·x + r − 1 − c``: ``average`` is biased
by ``((r − 1)/2 − c)/r`` image px, and ``shift`` adds ``1/(2r)``."""

from integral_cli import ExperimentConfig, run_experiment

STRIDE, SPLIT_RATIO = 4, 2.0
CASES = {  # (representation, convention): (r, c)
    ("heatmap", "center"): (1 / STRIDE, (1 / STRIDE - 1) / 2),
    ("heatmap", "corner"): (1 / STRIDE, 0.0),
    ("simcc", "center"): (SPLIT_RATIO, (SPLIT_RATIO - 1) / 2),
    ("simcc", "corner"): (SPLIT_RATIO, 0.0),
}
print(f"{'outputs':<8} {'convention':<11} {'flip test':<10} {'bias x':>8} {'closed form':>12}")
for (representation, convention), (r, c) in CASES.items():
    for flip_test in ("none", "average", "shift"):
        expected = 0.0
        if flip_test != "none":
            expected = ((r - 1) / 2 - c) / r + (1 / (2 * r) if flip_test == "shift" else 0.0)
        config = ExperimentConfig(
            representation=representation,
            stride=STRIDE,
            split_ratio=SPLIT_RATIO,
            # the Gaussian tail inside the output: exp(-18) of the peak at the border
            sigma=1.0 if representation == "heatmap" else 2.0,
            margin=6 if representation == "heatmap" else 12,
            amplitude=1.0,
            convention=convention,
            flip_test=flip_test,
            decoders=("integral-l1",),
            samples=2000,
            dtype="float64",
            device="cpu",
        )
        bias = run_experiment(config)["bias_x"].iloc[0]
        print(f"{representation:<8} {convention:<11} {flip_test:<10} {bias:>+8.3f} {expected:>+12.3f}")
