"""The scores papers report, from the errors of decoded keypoints.

- OKS (COCO): ``exp(-d^2 / (2 A kappa_j^2))`` for keypoint ``j``, ``kappa_j = 2 sigma_j``
  with COCO's 17 ``sigma_j``, ``A`` the person's area in the same pixels as ``d``; a
  person's OKS is the mean over its labelled keypoints.
- The AP ceiling: with perfect detection and ranking, COCO's AP at an OKS threshold is the
  share of persons whose OKS reaches it; averaged over the thresholds 0.50, 0.55, ...,
  0.95, it is the AP decoding alone would leave.
- PCK@alpha: the share of keypoints within ``alpha L``, ``L`` a per-sample length (a
  box's size, the distance between two keypoints); NME: the mean of ``d / L``; AUC: the
  area under PCK(alpha) from 0 to ``alpha_max``, normalised to 1.

Imports no torch: the scores work on numpy arrays of errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from integral_cli.checks import check_range
from integral_cli.coco import COCO_SIGMAS, OKS_THRESHOLDS
from integral_cli.errors import ConfigError

DEFAULT_PCK: tuple[float, ...] = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Scoring:
    """The scores asked of a run beyond its error statistics.

    Attributes:
        pck: thresholds in image pixels, or fractions of the ``normalize`` length.
        normalize: ``none``, ``bbox:FILE``, ``pair:I,J`` or ``value:V`` (see
            :func:`integral_cli.predictions.load_lengths`); with one, ``nme`` and ``auc``.
        auc_max: the AUC integrates PCK from 0 to this fraction.
        per_keypoint: also one row per keypoint.
    """

    pck: tuple[float, ...] = DEFAULT_PCK
    normalize: str = "none"
    auc_max: float = 0.5
    per_keypoint: bool = False

    def __post_init__(self) -> None:
        check_range(self.auc_max, "auc_max", 0, math.inf, low_open=True)
        for threshold in self.pck:
            check_range(threshold, "PCK threshold", 0, math.inf, low_open=True)
        if len(set(self.pck)) != len(self.pck):
            raise ConfigError("a PCK threshold is listed twice")

    @property
    def columns(self) -> list[str]:
        """The columns these scores add: ``keypoint``, PCK at each threshold, ``nme`` and
        ``auc``."""
        return ["keypoint", *(pck_column(t) for t in self.pck), "nme", "auc"]


def pck_column(threshold: float) -> str:
    """The column name of PCK at ``threshold``, e.g. ``pck_2``."""
    return f"pck_{threshold:g}"


def keypoint_oks(errors: np.ndarray, area: float) -> np.ndarray:
    """OKS of each keypoint of COCO persons: ``errors`` ``(P, 17)`` distances in pixels
    (NaN for an unlabelled keypoint, which stays NaN), ``area`` in pixels squared.

    >>> float(keypoint_oks(np.zeros((1, 17)), 100.0)[0, 0])
    1.0
    """
    if errors.ndim != 2 or errors.shape[-1] != len(COCO_SIGMAS):
        raise ConfigError(f"OKS needs COCO's {len(COCO_SIGMAS)} keypoints per person, got shape {errors.shape}")
    if not np.isfinite(area) or area <= 0:
        raise ConfigError(f"«oks_area» must be a finite number > 0, got {area}")
    kappa = 2 * np.asarray(COCO_SIGMAS)
    return np.exp(-(errors**2) / (2 * area * kappa**2))


def person_oks(errors: np.ndarray, area: float) -> np.ndarray:
    """``(P,)`` OKS of each person: the mean over its labelled keypoints (NaN errors are
    left out; a person with no labelled keypoint gets NaN). A non-finite decoded point of
    a labelled keypoint counts as OKS 0: give it ``inf``."""
    scores = keypoint_oks(errors, area)
    labelled = ~np.isnan(scores)
    counts = labelled.sum(axis=-1)
    totals = np.where(labelled, scores, 0.0).sum(axis=-1)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def ap_ceiling(oks: np.ndarray) -> float:
    """The mean over :data:`OKS_THRESHOLDS` of the share of persons whose OKS reaches the
    threshold: the AP of a perfect detector with perfect ranking.

    >>> ap_ceiling(np.array([1.0, 0.72]))  # the second person reaches 0.50 to 0.70
    0.75
    """
    kept = oks[np.isfinite(oks)]
    if kept.size == 0:
        return float("nan")
    return float((kept[None, :] >= np.asarray(OKS_THRESHOLDS)[:, None]).mean())


def pck_curve(normalised: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """The share of ``normalised`` errors ``d / L`` within each ``alpha`` (a non-finite
    error counts as a miss)."""
    finite = np.where(np.isfinite(normalised), normalised, np.inf)
    return (finite[None, :] <= alphas[:, None]).mean(axis=-1)


def auc(normalised: np.ndarray, alpha_max: float = 0.5) -> float:
    """The area under PCK(alpha) from 0 to ``alpha_max``, normalised to 1: the mean of
    ``1 - min(d / L, alpha_max) / alpha_max`` (exactly; a miss scores 0).

    >>> auc(np.array([0.0, 0.25, 1.0]), alpha_max=0.5)
    0.5
    """
    if not np.isfinite(alpha_max) or alpha_max <= 0:
        raise ConfigError(f"«auc_max» must be a finite number > 0, got {alpha_max}")
    finite = np.where(np.isfinite(normalised), normalised, np.inf)
    return float(np.mean(1.0 - np.minimum(finite, alpha_max) / alpha_max))


def person_scores(errors: np.ndarray, area: float) -> dict[str, float]:
    """``oks`` (the mean person OKS) and ``ap_ceiling`` of samples that are the keypoints
    of persons in order: sample ``i`` is keypoint ``i mod 17`` of person ``i // 17``.
    ``errors`` are ``(N,)`` distances in pixels, ``N`` a multiple of 17; a non-finite
    error is a miss (OKS 0)."""
    keypoints = len(COCO_SIGMAS)
    if errors.ndim != 1 or errors.size % keypoints:
        raise ConfigError(f"OKS needs whole persons of {keypoints} keypoints, got {errors.size} samples")
    misses = np.where(np.isfinite(errors), errors, np.inf)
    oks = person_oks(misses.reshape(-1, keypoints), area)
    return {"oks": float(np.mean(oks)), "ap_ceiling": ap_ceiling(oks)}


def keypoint_scores(
    errors: np.ndarray,
    pck: tuple[float, ...],
    *,
    lengths: np.ndarray | None = None,
    auc_max: float = 0.5,
) -> dict[str, float]:
    """PCK at each threshold (the share of ``errors`` within it; a non-finite error is a
    miss), in pixels, or in fractions of ``lengths`` when given, with then ``nme`` (the
    mean of ``error / length``) and ``auc``. Keypoints whose length is not finite (a
    pair normaliser with a keypoint unlabelled) are left out of the normalised scores."""
    scores: dict[str, float] = {}
    if lengths is None:
        relative = errors
    else:
        relative = errors[np.isfinite(lengths)] / lengths[np.isfinite(lengths)]
    for threshold in pck:
        scores[pck_column(threshold)] = (
            float(pck_curve(relative, np.array([threshold]))[0]) if relative.size else np.nan
        )
    if lengths is not None:
        finite = relative[np.isfinite(relative)]
        scores["nme"] = float(finite.mean()) if finite.size else float("nan")
        scores["auc"] = auc(relative, auc_max) if relative.size else float("nan")
    return scores


def group_scores(
    errors: np.ndarray,
    counted: np.ndarray,
    keypoint: int | None,
    scoring: Scoring,
    lengths: np.ndarray | None = None,
    oks_area: float | None = None,
) -> dict[str, float]:
    """The scores of one row of a table: all counted keypoints, or one.

    Args:
        errors: ``(N, K)`` distances in pixels (a non-finite one is a miss).
        counted: ``(N, K)`` the keypoints that count.
        keypoint: the index of the one keypoint scored, or ``None`` for all.
        scoring: the PCK thresholds and the AUC's range.
        lengths: ``(N,)`` per-sample lengths of the normaliser, or ``None``.
        oks_area: with an area (``K`` must be COCO's 17): ``oks``, the mean person OKS,
            and ``ap_ceiling`` for all keypoints, the mean OKS of the one keypoint else.

    Returns:
        :func:`keypoint_scores` of the chosen keypoints, and the OKS asked for.
    """
    chosen = counted.copy()
    if keypoint is not None:
        chosen[:, np.arange(chosen.shape[1]) != keypoint] = False
    per_sample = None if lengths is None else np.broadcast_to(lengths[:, None], chosen.shape)[chosen]
    scores = keypoint_scores(errors[chosen], scoring.pck, lengths=per_sample, auc_max=scoring.auc_max)
    if oks_area is not None:
        every = np.where(counted, np.where(np.isfinite(errors), errors, np.inf), np.nan)
        if keypoint is None:
            oks = person_oks(every, oks_area)
            scores |= {"oks": float(np.nanmean(oks)), "ap_ceiling": ap_ceiling(oks)}
        else:
            scores["oks"] = float(np.nanmean(keypoint_oks(every, oks_area)[:, keypoint]))
    return scores
