"""COCO's keypoints: their names, the per-keypoint sigmas of OKS and the OKS thresholds
of AP. Plain numbers, importable without numpy (the CLI's ``--help`` reads them)."""

from __future__ import annotations

#: COCO's 17 keypoints, in their order.
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
#: COCO's per-keypoint sigmas (``kappa_j = 2 sigma_j``).
COCO_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089,
    0.089,
)  # fmt: skip
#: The OKS thresholds COCO's AP averages over.
OKS_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
