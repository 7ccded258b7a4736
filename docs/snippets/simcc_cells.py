"""The mean error (image px) of every decoder in results/simcc.csv, heatmaps beside
SimCC vectors, with the outputs each encodes a keypoint in."""

from pathlib import Path

import pandas as pd

from integral_cli.plots import outputs_per_keypoint
from integral_cli.report import read_results

rows = read_results(Path(__file__).resolve().parents[2] / "results" / "simcc.csv")
rows["encoding"] = [
    f"s={stride:g}" if representation == "heatmap" else f"k={ratio:g}"
    for representation, stride, ratio in zip(rows.representation, rows.stride, rows.split_ratio, strict=True)
]
rows["outputs"] = outputs_per_keypoint(rows).astype(int)
order = rows.sort_values("outputs").encoding.unique()
pd.set_option("display.width", 100)
for position, group in rows.groupby("position"):
    table = group.pivot(index="decoder", columns="encoding", values="mean_error")[order]
    table = table.loc[list(dict.fromkeys(group.decoder))]
    outputs = group.drop_duplicates("encoding").set_index("encoding").outputs[order]
    print(f"{position}: mean error, image px (outputs per keypoint: {', '.join(map(str, outputs))})")
    print(table.map(lambda v: "-" if pd.isna(v) else f"{v:.3g}").to_string(), end="\n\n")
