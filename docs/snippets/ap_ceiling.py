"""The AP ceiling of argmax and DARK at a 128x96 and a 256x192 input (stride 4, sigma 2
heatmap px, peak 1), with the person's area a third of the crop's, as noise grows."""

from integral_cli import ExperimentConfig, run_experiment

print(f"{'input':<9} {'area px²':>8} {'noise':>5}  {'argmax':>7} {'DARK':>7} {'DARK gain':>10}")
for height, width in ((128, 96), (256, 192)):
    area = height * width / 3  # a COCO person's segment area is about a third of its crop
    for noise in (0.0, 0.1, 0.2):
        config = ExperimentConfig(
            image_size=(height, width),
            amplitude=1.0,
            noise=noise,
            oks_area=area,
            samples=17 * 500,  # 500 persons
            decoders=("argmax", "dark"),
            device="cpu",
        )
        ceiling = run_experiment(config).set_index("decoder")["ap_ceiling"] * 100
        gain = ceiling["dark"] - ceiling["argmax"]
        print(
            f"{height}x{width:<5} {area:>8.0f} {noise:>5g}  {ceiling['argmax']:>7.1f} {ceiling['dark']:>7.1f}"
            f" {gain:>+10.1f}"
        )
