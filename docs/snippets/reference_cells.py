"""The committed reference sweep (results/reference.csv, a 256x192 image): where the
paper's integral beats argmax, and the debiased integral's residual at sigma 1."""

import pandas as pd

reference = pd.read_csv("results/reference.csv")
mean = reference.pivot_table(index=["stride", "sigma", "amplitude"], columns="decoder", values="mean_error")
wins = mean[mean["integral"] < mean["argmax"]]
print(f"the integral beats argmax in {len(wins)} of {len(mean)} cells:")
print(wins[["argmax", "integral"]].round(3).to_string())
debiased = reference[(reference.decoder == "integral-debiased") & (reference.sigma == 1.0)]
print("\nintegral-debiased at sigma 1, heatmap px:")
print(debiased[["stride", "amplitude", "mean_error_hm"]].round(4).to_string(index=False))
