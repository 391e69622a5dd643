"""Span masking (wav2vec semantics): statistics, min_masks, padding, equal counts, determinism.
The exact fairseq mask is checked in test_fairseq_parity_audio.py."""

from __future__ import annotations

import numpy as np
import pytest

from data2vec.modalities.audio.masking import SpanMaskConfig, compute_span_mask


def _mask(shape, cfg, pad=None, seed=1, epoch=1, indices=None):
    idx = np.arange(shape[0]) if indices is None else np.asarray(indices)
    return compute_span_mask(shape, pad, cfg, seed=seed, epoch=epoch, indices=idx)


@pytest.mark.parametrize("p, L", [(0.65, 10), (0.3, 5), (0.1, 10)])
def test_masked_fraction_matches_overlapping_span_expectation(p, L):
    T = 2000
    m = _mask((64, T), SpanMaskConfig(mask_prob=p, mask_length=L, require_same_masks=False))
    # n = p*T/L starts drawn without replacement among T-L+1: a frame stays unmasked with prob ~(1 - L/T)^n
    expected = 1 - (1 - L / T) ** (p * T / L)
    assert m.mean() == pytest.approx(expected, abs=0.03)
    assert m.dtype == bool and m.shape == (64, T)


def test_masked_fraction_increases_with_mask_prob():
    fracs = [_mask((32, 1000), SpanMaskConfig(mask_prob=p, mask_length=10, require_same_masks=False)).mean()
             for p in (0.1, 0.3, 0.5, 0.65, 0.9)]
    assert all(a < b for a, b in zip(fracs, fracs[1:])), fracs
    assert 0.08 < fracs[0] < 0.11 and 0.55 < fracs[-1] < 0.65


def test_spans_have_the_configured_length():
    m = _mask((1, 5000), SpanMaskConfig(mask_prob=0.02, mask_length=7, require_same_masks=False))[0]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], m.astype(int), [0]])))
    runs = edges[1::2] - edges[::2]
    assert runs.min() >= 7 and np.mean(runs == 7) > 0.8  # overlaps merge a few spans


@pytest.mark.parametrize("min_masks", [1, 2, 3])
def test_min_masks_on_short_rows(min_masks):
    # mask_prob 0: no span from the probability, so exactly min_masks distinct starts of 3 frames
    m = _mask((8, 12), SpanMaskConfig(mask_prob=0.0, mask_length=3, min_masks=min_masks, require_same_masks=False))
    counts = m.sum(1)
    assert (counts >= 3 + min_masks - 1).all() and (counts <= 3 * min_masks).all()
    if min_masks == 1:
        assert (counts == 3).all()


def test_row_too_short_to_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="too short"):
        _mask((1, 1), SpanMaskConfig(mask_prob=0.65, mask_length=10))
    with pytest.raises(ValueError, match="one dataset index per row"):
        _mask((2, 100), SpanMaskConfig(), indices=[0])


def test_padding_is_never_masked_and_masks_stay_in_the_valid_region():
    pad = np.zeros((4, 300), dtype=bool)
    pad[1, 100:] = True
    pad[3, 250:] = True
    m = _mask((4, 300), SpanMaskConfig(mask_prob=0.65, mask_length=10, require_same_masks=False), pad)
    assert not (m & pad).any()
    assert m[1, :100].mean() > 0.3  # the short row is masked at the same rate in its valid part


def test_require_same_masks_equalises_counts():
    pad = np.zeros((6, 400), dtype=bool)
    pad[2, 150:] = True
    m = _mask((6, 400), SpanMaskConfig(mask_prob=0.5, mask_length=10, require_same_masks=True), pad)
    assert len(set(m.sum(1).tolist())) == 1 and m.sum() > 0
    assert not (m & pad).any()
    drop = SpanMaskConfig(mask_prob=0.5, mask_length=10, require_same_masks=True, mask_dropout=0.2)
    md = _mask((6, 400), drop, pad)
    assert len(set(md.sum(1).tolist())) == 1 and md.sum(1)[0] == np.rint(m.sum(1)[0] * 0.8)


def test_determinism_and_per_sample_seeding():
    cfg = SpanMaskConfig(mask_prob=0.65, mask_length=10, require_same_masks=False)
    a = _mask((4, 500), cfg, indices=[10, 11, 12, 13])
    assert np.array_equal(a, _mask((4, 500), cfg, indices=[10, 11, 12, 13]))
    assert not np.array_equal(a, _mask((4, 500), cfg, indices=[10, 11, 12, 13], epoch=2))
    assert not np.array_equal(a, _mask((4, 500), cfg, indices=[10, 11, 12, 13], seed=2))
    # a sample's mask does not depend on its batch mates (any worker, any rank, any batch order)
    b = _mask((2, 500), cfg, indices=[12, 99])
    assert np.array_equal(a[2], b[0])
    pad = np.zeros((2, 500), dtype=bool)
    pad[1, 200:] = True  # a padded batch mate changes nothing either
    assert np.array_equal(a[2], _mask((2, 500), cfg, pad, indices=[12, 10])[0])


def test_mask_dropout_unmasks_a_fraction():
    base = SpanMaskConfig(mask_prob=0.65, mask_length=10, require_same_masks=False)
    drop = SpanMaskConfig(mask_prob=0.65, mask_length=10, require_same_masks=False, mask_dropout=0.5)
    a, b = _mask((16, 1000), base).sum(), _mask((16, 1000), drop).sum()
    assert b == pytest.approx(0.5 * a, rel=0.1)


@pytest.mark.parametrize("kw, message", [
    ({"mask_prob": 1.0}, "mask_prob"), ({"mask_length": 0}, "mask_length"), ({"mask_dropout": -0.1}, "mask_dropout")])
def test_config_validation(kw, message):
    with pytest.raises(ValueError, match=message):
        SpanMaskConfig(**kw)
