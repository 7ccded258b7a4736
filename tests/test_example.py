"""The reading note's example against a straight numpy transcription of the note's code.

The transcription follows the note line by line, with its slip fixed: the softmax of the
first variant is applied to the map that is then used (the note computes it and drops it).
"""

import numpy as np
import pytest

from integral_cli.example import EXAMPLE_DECODERS, example_heatmaps, run_example


def make_gaussian(height, width, sigma, center):
    x = np.arange(0, width, 1, float)
    y = np.arange(0, height, 1, float)[:, np.newaxis]
    return 10 * np.exp(-4 * np.log(2) * ((x - center[0]) ** 2 + (y - center[1]) ** 2) / sigma**2)


def generate_hm(height, width, joints, maxlength):
    hm = np.zeros((joints.shape[0], height, width), dtype=np.float32)
    for i in range(joints.shape[0]):
        s = int(np.sqrt(maxlength) * maxlength * 10 / 4096) + 3
        hm[i] = make_gaussian(height, width, s, (joints[i, 0], joints[i, 1]))
    return hm


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def integral_paper(h):
    p = softmax(h.astype(np.float64).ravel()).reshape(h.shape)
    return (p.sum(0) * np.arange(h.shape[1])).sum(), (p.sum(1) * np.arange(h.shape[0])).sum()


def integral_marginal(h):
    h = h.astype(np.float64)
    return (softmax(h.sum(0)) * np.arange(h.shape[1])).sum(), (softmax(h.sum(1)) * np.arange(h.shape[0])).sum()


def argmax(h):
    y, x = np.unravel_index(np.argmax(h), h.shape)
    return float(x), float(y)


JOINTS = np.array([[10, 10], [3, 8], [16, 18]])


def test_maps_are_the_notes():
    expected = generate_hm(64, 32, JOINTS, 64)
    np.testing.assert_allclose(example_heatmaps()[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_decoded_numbers_match_the_reference():
    rows = run_example()
    assert list(rows.columns) == ["joint", "gt_x", "gt_y", "decoder", "x", "y"]
    assert len(rows) == 3 * len(EXAMPLE_DECODERS)
    maps = generate_hm(64, 32, JOINTS, 64)
    references = {"argmax": argmax, "integral": integral_paper, "integral-marginal": integral_marginal}
    for row in rows.itertuples():
        assert (row.gt_x, row.gt_y) == tuple(JOINTS[row.joint])
        expected = references[row.decoder](maps[row.joint])
        assert (row.x, row.y) == pytest.approx(expected, abs=1e-4), (row.joint, row.decoder)


def test_the_two_integral_variants_disagree_by_pixels():
    rows = run_example().set_index(["joint", "decoder"])
    gap = abs(rows.loc[(0, "integral"), "y"] - rows.loc[(0, "integral-marginal"), "y"])
    assert gap > 0.5
