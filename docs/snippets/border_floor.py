"""Where the debiased and L1 integrals' small floors at amplitude 1 come from: the
Gaussian's tail cut by the map border. The same points (6 heatmap px from the border of
the 64x48 map) on the 64x48 map and on a 200x200 map that holds them far inside."""

import torch

from integral_cli import decode, render_heatmaps

generator = torch.Generator().manual_seed(0)
points = 6 + torch.rand(10_000, 1, 2, generator=generator, dtype=torch.float64) * torch.tensor([35.0, 51.0])
for size, shift in (((64, 48), 0.0), ((200, 200), 76.0)):
    maps = render_heatmaps(points + shift, size, 2.0, amplitude=1.0)
    for name in ("integral-debiased", "integral-l1"):
        error = (decode(maps, name) - (points + shift)).norm(dim=-1).flatten() * 4  # image px at stride 4
        print(
            f"{size[0]}x{size[1]}  {name:<18} mean {error.mean():.1e}  median {error.median():.1e}  "
            f"max {error.max():.1e} image px"
        )
