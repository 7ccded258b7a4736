"""The flip test's bias in x, in image pixels, at stride 4: measured (integral-l1 reads
the mean of the averaged map's two peaks) against the closed form."""

from integral_cli import ExperimentConfig, run_experiment

STRIDE = 4
CLOSED_FORMS = {
    ("center", "none"): 0.0,
    ("center", "average"): 0.0,
    ("center", "shift"): STRIDE / 2,
    ("corner", "none"): 0.0,
    ("corner", "average"): -(STRIDE - 1) / 2,
    ("corner", "shift"): 0.5,
}
print(f"{'convention':<11} {'flip test':<10} {'bias x':>8} {'closed form':>12}")
for (convention, flip_test), expected in CLOSED_FORMS.items():
    config = ExperimentConfig(
        stride=STRIDE,
        sigma=1.0,
        margin=6,  # the Gaussian tail inside the map: exp(-18) of the peak at the border
        amplitude=1.0,
        convention=convention,
        flip_test=flip_test,
        decoders=("integral-l1",),
        samples=2000,
        dtype="float64",
        device="cpu",
    )
    bias = run_experiment(config)["bias_x"].iloc[0]
    print(f"{convention:<11} {flip_test:<10} {bias:>+8.3f} {expected:>+12.3f}")
