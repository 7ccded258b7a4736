"""CPU-versus-GPU agreement, and GPU speed, on a machine with a CUDA GPU.

The test suite checks the device code paths on the CPU (its fake-device harness); this
checks the numbers on a real GPU:

1. ground truth: the points of a compare run are the same, bit for bit, on both;
2. maps: the rendered maps (noise and distractor included) agree to float32 rounding;
3. decoders: every decoder lands within ``--tolerance`` heatmap px (default 1e-4) of the
   CPU's answer on the same maps, clean and noisy (noisy maps send DARK through its
   whole-map blur), with TensorFloat-32 switched on by the caller, as many training
   scripts do: the library must run float32 in full float32 regardless;
4. compare: the rows of a compare run on both agree to the same tolerance, in image px.

Then it runs ``integral-cli bench --device cuda`` and prints its table.

    python benchmarks/gpu_check.py [--device cuda] [--samples 4000] [--batch 4096] [--repeat 5]

Prints one line per check and exits with 1 if one fails; on a machine without CUDA it
says so in one line and exits with 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch

from integral_cli import DECODERS, ExperimentConfig, decode, run_experiment
from integral_cli.devices import device_name, resolve_device
from integral_cli.errors import IntegralError
from integral_cli.experiment import render_maps, sample_truth

#: Noise levels (relative to the peak) the decoders are compared on.
NOISE_LEVELS = (0.0, 0.02, 0.1)
#: The summary columns of compare rows that must agree, image px.
ROW_COLUMNS = ("mean_error", "median_error", "p95_error", "max_error", "bias_x", "bias_y")


def allow_tf32() -> None:
    """What an Ampere user's script often sets: float32 convolutions and matrix products
    in TensorFloat-32."""
    cudnn = torch.backends.cudnn
    if hasattr(cudnn, "conv"):
        cudnn.conv.fp32_precision = "tf32"
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    else:
        cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def check(name: str, passed: bool, detail: str) -> bool:
    print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    return passed


def compare_decoders(config: ExperimentConfig, gpu: torch.device, tolerance: float) -> list[bool]:
    """Each decoder on the same maps, moved to the GPU: the largest difference."""
    results = []
    truth = sample_truth(config)
    maps = render_maps(config, truth, 0)
    on_gpu = maps.to(gpu)
    for name in config.decoders:
        expected = decode(maps, name, **config.decoder_params)
        got = decode(on_gpu, name, **config.decoder_params).cpu()
        same_finite = torch.equal(torch.isfinite(got), torch.isfinite(expected))
        finite = torch.isfinite(expected)
        worst = (got - expected)[finite].abs().max().item() if finite.any() else 0.0
        moved = int(((got - expected)[finite].abs() > tolerance).sum())
        results.append(
            check(
                f"{name}, noise {config.noise:g}",
                same_finite and worst <= tolerance,
                f"largest difference {worst:.1e} heatmap px, {moved} of {finite.sum().item()} beyond {tolerance:g}"
                + ("" if same_finite else "; NaN in different places"),
            )
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="heatmap px (decoders), image px (rows)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (no GPU, or a torch build without CUDA)", file=sys.stderr)
        return 1
    try:
        gpu = resolve_device(args.device)
    except IntegralError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 1
    print(f"CPU against {device_name(gpu)}, torch {torch.__version__}")
    allow_tf32()
    passed = []

    base = dict(samples=args.samples, noise=0.1, distractor=0.5, position="anywhere", seed=7)
    cpu_config, gpu_config = ExperimentConfig(**base, device="cpu"), ExperimentConfig(**base, device=str(gpu))
    truth = sample_truth(cpu_config)
    passed.append(check("ground truth", torch.equal(sample_truth(gpu_config, gpu).cpu(), truth), "bit for bit"))
    maps_cpu = render_maps(cpu_config, truth[:500], 0)
    maps_gpu = render_maps(gpu_config, truth[:500].to(gpu), 0).cpu()
    # float32 rendering: the GPU's exp and products may round differently, a few ulp of
    # values up to ~15 (peak 10 plus noise), ~1e-6 each; the noise is the same float64
    # numbers rounded to float32. 2e-5 leaves room for both.
    difference = (maps_gpu - maps_cpu).abs().max().item()
    passed.append(check("maps", difference <= 2e-5, f"largest difference {difference:.1e}"))

    for noise in NOISE_LEVELS:
        config = ExperimentConfig(samples=args.samples, noise=noise, device="cpu", decoders=tuple(DECODERS))
        passed += compare_decoders(config, gpu, args.tolerance)

    rows_cpu = run_experiment(cpu_config).set_index("decoder")
    rows_gpu = run_experiment(gpu_config).set_index("decoder")
    for name in cpu_config.decoders:
        worst = max(abs(rows_gpu.loc[name, c] - rows_cpu.loc[name, c]) for c in ROW_COLUMNS)
        passed.append(check(f"compare row {name}", worst <= args.tolerance, f"largest difference {worst:.1e} image px"))

    print()
    bench = [sys.executable, "-m", "integral_cli", "bench", "--device", str(gpu)]
    subprocess.run([*bench, "--batch", str(args.batch), "--repeat", str(args.repeat)], check=False)
    failed = passed.count(False)
    print(f"\n{len(passed) - failed} of {len(passed)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
