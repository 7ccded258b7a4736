"""The committed 3D reference sweep (results/volumes.csv, 64^3 volumes): the mean 3D
error of every decoder of volumes, in voxels, per sigma (voxels) and amplitude; and the
integral's (x, y) error beside the 2D reference's at stride 4, for the pull."""

import pandas as pd

volumes = pd.read_csv("results/volumes.csv")
table = volumes.pivot_table(index="decoder", columns=["sigma", "amplitude"], values="mean_error_3d", sort=False)
table.columns = [f"s{sigma:g} A{amplitude:g}" for sigma, amplitude in table.columns]
print("mean 3D error, voxels (64^3 volumes, 10000 points per cell):")
print(table.map(lambda v: f"{v:.3g}").to_string())
maps = pd.read_csv("results/reference.csv")
maps = maps[(maps.stride == 4) & maps.sigma.isin([1.0, 2.0, 3.0])]
print("\nthe integral's (x, y) error in heatmap px (voxels): 64x48 maps, 64^3 volumes")
for (sigma, amplitude), cell in volumes[volumes.decoder == "integral"].groupby(["sigma", "amplitude"]):
    flat = maps[(maps.sigma == sigma) & (maps.amplitude == amplitude) & (maps.decoder == "integral")]
    print(
        f"sigma {sigma:g} amplitude {amplitude:>2g}:  maps {flat.mean_error_hm.iloc[0]:6.3g}  "
        f"volumes {cell.mean_error_hm.iloc[0]:6.3g}  (3D {cell.mean_error_3d.iloc[0]:.3g})"
    )
