"""data2vec 2.0 masks (data2vec.data.masks_v2, modalities/<m>/masking_v2.py) and the v2 branch of the audio, text
and image collators:
exact masked counts, block structure, fairseq's draws, per-sample seeding of the M clones, batch layout."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from data2vec.core.rng import sample_seed
from data2vec.data.masks_v2 import BlockMaskV2Config, compute_block_mask_1d, compute_block_mask_2d
from data2vec.modalities.audio.dataset import AudioCollator
from data2vec.modalities.audio.encoder import conv_frame_lengths
from data2vec.modalities.audio.masking import SpanMaskConfig, compute_span_mask
from data2vec.modalities.audio.masking_v2 import draw_v2_masks as audio_masks
from data2vec.modalities.image.dataset import ImageCollator
from data2vec.modalities.image.masking import BlockMaskConfig, block_mask
from data2vec.modalities.image.masking_v2 import draw_v2_masks as image_masks
from data2vec.modalities.text.collator import TextCollator
from data2vec.modalities.text.masking import TokenMaskConfig
from data2vec.modalities.text.masking_v2 import RandomMaskV2Config, random_mask
from data2vec.modalities.text.masking_v2 import draw_v2_masks as text_masks


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _runs(row: torch.Tensor) -> np.ndarray:
    """Lengths of the runs of True in a 1-D bool row."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.numpy().astype(int), [0]])))
    return edges[1::2] - edges[::2]


# ---- exact counts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(mask_prob_adjust=0.1), dict(non_overlapping=True),
                                dict(expand_adjacent=True, mask_dropout=0.2), dict(mask_dropout=0.3),
                                dict(non_overlapping=True, mask_prob_adjust=0.05, mask_dropout=0.1)])
@pytest.mark.parametrize("L, p, length", [(499, 0.65, 10), (100, 0.5, 5), (37, 0.2, 3), (7, 0.5, 10)])
def test_1d_exact_count(kw, L, p, length):
    m = compute_block_mask_1d((6, L), p, length, generator=_g(1), **kw)
    assert m.dtype == torch.bool and m.shape == (6, L)
    assert m.sum(1).tolist() == [int(L * p)] * 6
    inv = compute_block_mask_1d((6, L), p, length, inverse_mask=True, generator=_g(1), **kw)
    assert inv.sum(1).tolist() == [L - int(L * (1 - p))] * 6


@pytest.mark.parametrize("kw", [dict(), dict(mask_prob_adjust=0.07), dict(non_overlapping=True),
                                dict(expand_adjacent=True, mask_dropout=0.2)])
@pytest.mark.parametrize("L, p, length", [(196, 0.8, 3), (196, 0.6, 5), (64, 0.5, 2), (49, 0.75, 4)])
def test_2d_exact_count(kw, L, p, length):
    m = compute_block_mask_2d((5, L), p, length, generator=_g(2), **kw)
    assert m.dtype == torch.bool and m.shape == (5, L)
    assert m.sum(1).tolist() == [int(L * p)] * 5
    inv = compute_block_mask_2d((5, L), p, length, inverse_mask=True, generator=_g(2), **kw)
    assert inv.sum(1).tolist() == [L - int(L * (1 - p))] * 5


@pytest.mark.parametrize("L, p", [(512, 0.48), (37, 0.7), (10, 0.0), (3, 0.5)])
def test_random_mask_exact_count(L, p):
    m = random_mask((8, L), p, generator=_g(3))
    assert m.dtype == torch.bool and m.sum(1).tolist() == [L - int(L * (1 - p))] * 8
    if L > 30 and p > 0:
        assert len({tuple(r.tolist()) for r in m}) == 8  # rows draw their own noise


def test_without_require_same_masks_counts_vary():
    m = compute_block_mask_1d((16, 400), 0.5, 10, require_same_masks=False, generator=_g(4))
    assert len(set(m.sum(1).tolist())) > 1  # overlaps differ per row; nothing evens them out


# ---- the exact-count adjustment, by hand --------------------------------------------------------------
def test_exact_count_adjustment_by_hand():
    # non_overlapping, L=10, length 5: 2 tiles, int(2 * 0.5) = 1 tile drawn = 5 positions = int(10 * 0.5):
    # no adjustment, the mask is exactly one tile
    for s in range(10):
        m = compute_block_mask_1d((1, 10), 0.5, 5, non_overlapping=True, generator=_g(s))[0]
        assert m.tolist() in ([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)
    # p=0.3, adjust=0.2: still one tile of 5 drawn, but int(10 * 0.3) = 3 wanted: 2 of its positions are
    # unmasked at random, so the 3 masked ones lie inside one tile
    seen = set()
    for s in range(20):
        m = compute_block_mask_1d((1, 10), 0.3, 5, mask_prob_adjust=0.2, non_overlapping=True, generator=_g(s))[0]
        idx = m.nonzero().flatten().tolist()
        assert len(idx) == 3 and (max(idx) < 5 or min(idx) >= 5)
        seen.add(tuple(idx))
    assert len(seen) > 2  # the removal is random
    # p=0.3 without adjust: int(2 * 0.3) = 0 tiles; int(10 * 0.3 / 5) = 0 centres overlapping: 3 added at random
    for kw in (dict(non_overlapping=True), dict()):
        assert compute_block_mask_1d((4, 10), 0.3, 5, generator=_g(0), **kw).sum(1).tolist() == [3] * 4
    # L=10, length 3, p=0.5: tiles [0-2] [3-5] [6-8] [9]; 2 drawn = 6 or 4 positions, then -1 or +1 to reach 5
    for s in range(20):
        m = compute_block_mask_1d((1, 10), 0.5, 3, non_overlapping=True, generator=_g(s))[0]
        assert int(m.sum()) == 5
        tiles = [m[a:b].sum().item() for a, b in ((0, 3), (3, 6), (6, 9), (9, 10))]
        assert sum(t > 0 for t in tiles) in (2, 3)


def test_expand_adjacent_grows_blocks_before_the_random_top_up():
    # int(1000 * 0.5 / 200) = 2 spans of 200 (<= 400 positions) for a target of 500
    grown = compute_block_mask_1d((4, 1000), 0.5, 200, expand_adjacent=True, generator=_g(5))
    topped = compute_block_mask_1d((4, 1000), 0.5, 200, generator=_g(5))
    assert grown.sum(1).tolist() == topped.sum(1).tolist() == [500] * 4
    for g_row, t_row in zip(grown, topped):
        assert len(_runs(g_row)) <= 2  # growth extends (or merges) the spans
        assert len(_runs(t_row)) > 10  # the random top-up scatters the missing positions


# ---- block structure ------------------------------------------------------------------------------------
def test_1d_masks_are_made_of_runs():
    L, length = 4000, 10
    m = compute_block_mask_1d((4, L), 0.1, length, generator=_g(6))
    for row in m:
        runs = _runs(row)
        in_long_runs = runs[runs >= length].sum()
        assert in_long_runs >= 0.85 * row.sum()  # only the few random top-up positions are shorter


def test_2d_inverse_kept_regions_are_blocks():
    d, length = 14, 3
    m = compute_block_mask_2d((8, d * d), 0.8, length, mask_prob_adjust=0.07, inverse_mask=True, generator=_g(7))
    kept = ~m.view(8, d, d)
    assert kept.sum((1, 2)).tolist() == [int(d * d * 0.2)] * 8  # L - (L - int(L * 0.2))
    # a kept patch lies in a fully kept 2 x 2 window (part of a painted square) far more often than by chance
    win = kept[:, :-1, :-1] & kept[:, 1:, :-1] & kept[:, :-1, 1:] & kept[:, 1:, 1:]
    covered = torch.zeros_like(kept)
    for di in (0, 1):
        for dj in (0, 1):
            covered[:, di:d - 1 + di, dj:d - 1 + dj] |= win
    frac = (covered & kept).sum().item() / kept.sum().item()
    assert frac > 0.6, frac
    # random masks at the same rate are salt and pepper
    r = ~random_mask((8, d * d), 0.8, generator=_g(7)).view(8, d, d)
    rwin = r[:, :-1, :-1] & r[:, 1:, :-1] & r[:, :-1, 1:] & r[:, 1:, 1:]
    assert win.sum() > 4 * rwin.sum()


# ---- fairseq's draws ---------------------------------------------------------------------------------
# Masked positions produced by fairseq's own compute_block_mask_1d/2d and random_masking (examples/data2vec
# models/modalities/base.py) after torch.manual_seed(s), torch 2.x CPU; ours draw from the global generator
# when generator=None, in the same order, so they must agree.
GOLDEN = {
    "1d": [[0, 1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15, 16, 18, 28, 29, 37, 38, 39],
           [1, 2, 3, 4, 5, 14, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]],
    "2d": [[0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 31, 32,
            33, 34, 35, 39, 40, 41, 42, 43, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63],
           [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
            29, 30, 32, 33, 37, 38, 39, 40, 41, 45, 46, 47, 49, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63]],
    "1d-expand": [[7, 9, 10, 11, 12, 16, 17, 19, 22, 23, 24, 25, 26, 27, 28]],
    "rand": [[4, 6, 7, 8, 9, 11, 15, 17, 18, 19], [0, 2, 6, 7, 10, 11, 15, 16, 18, 19]],
}


def _positions(m: torch.Tensor) -> list[list[int]]:
    return [r.nonzero().flatten().tolist() for r in m]


def test_same_draws_as_fairseq():
    cases = {
        "1d": (0, lambda g: compute_block_mask_1d((2, 40), 0.5, 5, 0.05, generator=g)),
        "2d": (1, lambda g: compute_block_mask_2d((2, 64), 0.8, 3, 0.07, inverse_mask=True, generator=g)),
        "1d-expand": (2, lambda g: compute_block_mask_1d((1, 30), 0.5, 3, expand_adjacent=True, mask_dropout=0.2,
                                                         generator=g)),
        "rand": (3, lambda g: random_mask((2, 20), 0.48, generator=g)),
    }
    state = torch.get_rng_state()
    try:
        for name, (seed, fn) in cases.items():
            torch.manual_seed(seed)
            assert _positions(fn(None)) == GOLDEN[name], name
            assert _positions(fn(_g(seed))) == GOLDEN[name], name  # a seeded generator = the seeded global one
    finally:
        torch.set_rng_state(state)


# ---- per-sample drawing -----------------------------------------------------------------------------
def test_draw_v2_masks_seeding_and_layout():
    cfg = BlockMaskV2Config(mask_prob=0.65, mask_length=5, clone_batch=4)
    m = audio_masks(cfg, 200, seed=3, epoch=2, indices=[7, 11, 5])
    assert m.shape == (12, 200) and m.dtype == torch.bool
    assert m.sum(1).tolist() == [130] * 12
    assert len({tuple(r.tolist()) for r in m}) == 12  # clones of one sample differ, samples differ
    for b, i in enumerate([7, 11, 5]):  # sample-major: rows b*M .. b*M+M-1 are sample b's, drawn alone
        alone = audio_masks(cfg, 200, seed=3, epoch=2, indices=[i])
        assert torch.equal(m[b * 4:(b + 1) * 4], alone)
        direct = compute_block_mask_1d((4, 200), 0.65, 5, generator=_g(sample_seed(3, 2, i)))
        assert torch.equal(alone, direct)
    assert torch.equal(audio_masks(cfg, 200, seed=3, epoch=2, indices=torch.tensor([11])), m[4:8])
    assert not torch.equal(audio_masks(cfg, 200, seed=3, epoch=3, indices=[7]), m[:4])
    assert not torch.equal(audio_masks(cfg, 200, seed=4, epoch=2, indices=[7]), m[:4])
    assert audio_masks(cfg, 200, seed=3, epoch=2, indices=[]).shape == (0, 200)


def test_draw_v2_masks_grid_and_random():
    cfg = BlockMaskV2Config(mask_prob=0.8, mask_prob_adjust=0.07, mask_length=3, inverse_mask=True, clone_batch=3)
    m = image_masks(cfg, (14, 14), seed=0, epoch=1, indices=[2, 9])
    assert m.shape == (6, 196) and m.sum(1).tolist() == [196 - int(196 * 0.2)] * 6
    direct = compute_block_mask_2d((3, 196), 0.8, 3, 0.07, inverse_mask=True, generator=_g(sample_seed(0, 1, 9)))
    assert torch.equal(m[3:], direct)
    # mask_length 1 on a grid: 1-D over the patches, as fairseq's MaeImageDataset
    one = BlockMaskV2Config(mask_prob=0.6, mask_length=1, clone_batch=2)
    assert torch.equal(image_masks(one, (4, 6), seed=0, epoch=1, indices=[1]),
                       compute_block_mask_1d((2, 24), 0.6, 1, generator=_g(sample_seed(0, 1, 1))))
    rnd = RandomMaskV2Config(mask_prob=0.48, clone_batch=5)
    r = text_masks(rnd, 50, seed=1, epoch=1, indices=[0, 1])
    assert r.shape == (10, 50) and r.sum(1).tolist() == [50 - int(50 * 0.52)] * 10
    assert torch.equal(r[5:], random_mask((5, 50), 0.48, generator=_g(sample_seed(1, 1, 1))))


def test_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="square patch grid, got 14 x 12"):
        image_masks(BlockMaskV2Config(mask_length=3), (14, 12), seed=0, epoch=1, indices=[0])
    with pytest.raises(ValueError, match="not a square number"):
        compute_block_mask_2d((1, 50), 0.5, 3)
    with pytest.raises(ValueError, match="mask_length >= 2"):
        compute_block_mask_2d((1, 49), 0.5, 1)
    with pytest.raises(TypeError, match="need a BlockMaskV2Config"):
        audio_masks(SpanMaskConfig(), 100, seed=0, epoch=1, indices=[0])
    with pytest.raises(TypeError, match="need a RandomMaskV2Config"):
        text_masks(BlockMaskV2Config(), 100, seed=0, epoch=1, indices=[0])
    with pytest.raises(ValueError, match="at least one position"):
        image_masks(BlockMaskV2Config(mask_length=3), (0, 0), seed=0, epoch=1, indices=[0])
    for kw, msg in [(dict(mask_prob=1.0), "mask_prob"), (dict(mask_prob=-0.1), "mask_prob"),
                    (dict(mask_length=0), "mask_length"), (dict(mask_dropout=1.0), "mask_dropout"),
                    (dict(mask_prob_adjust=-0.1), "mask_prob_adjust"), (dict(clone_batch=0), "clone_batch")]:
        with pytest.raises(ValueError, match=msg):
            BlockMaskV2Config(**kw)
    with pytest.raises(ValueError, match="clone_batch"):
        RandomMaskV2Config(clone_batch=0)
    with pytest.raises(ValueError, match="mask_prob"):
        RandomMaskV2Config(mask_prob=1.5)


# ---- collators -------------------------------------------------------------------------------------------
CONV = [(8, 10, 5), (8, 3, 2)]  # (dim, kernel, stride)
FRAMES = functools.partial(conv_frame_lengths, conv_layers=CONV)


def _audio_samples(lengths, ids, epoch=1):
    return [{"id": i, "epoch": epoch, "source": torch.arange(n, dtype=torch.float32) + 1000 * i}
            for n, i in zip(lengths, ids)]


def test_audio_collator_v2_crops_to_shortest_and_draws_m_masks():
    cfg = BlockMaskV2Config(mask_prob=0.65, mask_length=5, clone_batch=3)
    col = AudioCollator(frame_lengths_fn=FRAMES, mask_cfg=cfg, seed=1, pad=True, max_sample_size=10**6)
    b = col(_audio_samples([5000, 4000, 7000], [4, 8, 2]))
    assert set(b) == {"source", "padding_mask", "frame_padding_mask", "mask", "indices", "num_masked"}
    assert b["source"].shape == (3, 4000) and b["padding_mask"] is None and b["frame_padding_mask"] is None
    for row, i, n in zip(b["source"], [4, 8, 2], [5000, 4000, 7000]):  # a window of each clip, no padding
        start = int(row[0]) - 1000 * i
        assert 0 <= start <= n - 4000 and torch.equal(row - row[0], torch.arange(4000, dtype=torch.float32))
    F_ = int(FRAMES(torch.tensor([4000]))[0])
    assert F_ == 399 and b["mask"].shape == (9, F_)  # (4000 - 10) // 5 + 1 = 799 -> (799 - 3) // 2 + 1
    assert b["num_masked"] == int(b["mask"].sum()) == 9 * int(F_ * 0.65)
    assert b["indices"].tolist() == [4, 8, 2]
    for k, i in enumerate([4, 8, 2]):
        assert torch.equal(b["mask"][3 * k:3 * k + 3], audio_masks(cfg, F_, seed=1, epoch=1, indices=[i]))
    # the same sample in another batch with the same frame count (another worker, another batch): same masks
    other = col(_audio_samples([4000, 9000], [2, 99]))
    assert torch.equal(other["mask"][:3], b["mask"][6:9])
    # max_sample_size still caps the length
    capped = AudioCollator(frame_lengths_fn=FRAMES, mask_cfg=cfg, seed=1, pad=False, max_sample_size=3000)
    assert capped(_audio_samples([5000, 4000], [0, 1]))["source"].shape == (2, 3000)
    with pytest.raises(ValueError, match="BlockMaskV2Config"):
        AudioCollator(frame_lengths_fn=FRAMES, mask_cfg=RandomMaskV2Config(), seed=1, pad=True, max_sample_size=10)


def test_audio_collator_v1_unchanged():
    cfg = SpanMaskConfig(mask_prob=0.5, mask_length=5)
    col = AudioCollator(frame_lengths_fn=FRAMES, mask_cfg=cfg, seed=1, pad=True, max_sample_size=10**6)
    b = col(_audio_samples([5000, 4000], [4, 8]))
    assert b["source"].shape == (2, 5000) and b["padding_mask"][1, 4000:].all()
    assert b["mask"].shape == b["frame_padding_mask"].shape == (2, int(FRAMES(torch.tensor([5000]))[0]))
    expected = compute_span_mask(tuple(b["mask"].shape), b["frame_padding_mask"].numpy(), cfg, seed=1, epoch=1,
                                 indices=[4, 8])
    assert np.array_equal(b["mask"].numpy(), expected) and b["num_masked"] == int(expected.sum())


PAD, MASK = 1, 4


def _text_samples(lengths, ids, epoch=1):
    rng = np.random.default_rng(0)
    return [{"id": i, "epoch": epoch, "tokens": np.concatenate([[0], rng.integers(5, 50, n - 1)]).astype(np.int64)}
            for n, i in zip(lengths, ids)]


def test_text_collator_v2_clean_tokens_and_masks():
    cfg = RandomMaskV2Config(mask_prob=0.48, clone_batch=4)
    col = TextCollator(cfg, 0, PAD, MASK, frozenset({0, 1, 2, 3, 4}), 50)
    samples = _text_samples([20, 12, 17], [3, 1, 6])
    b = col(samples)
    assert set(b) == {"source", "padding_mask", "mask", "indices", "num_masked"}  # no teacher_source
    T = 20
    assert b["source"].shape == (3, T) and b["mask"].shape == (12, T)
    for s, row in zip(samples, b["source"]):  # tokens as they are: no <mask>, no replacement
        n = len(s["tokens"])
        assert torch.equal(row[:n], torch.from_numpy(s["tokens"])) and (row[n:] == PAD).all()
    assert not (b["source"] == MASK).any()
    pad = b["padding_mask"]
    assert pad.sum().item() == 3 * T - 49 and pad[0].sum() == 0 and pad[1, 12:].all()
    assert b["mask"].sum(1).tolist() == [T - int(T * 0.52)] * 12  # padded positions count too, as in fairseq
    expected = int((b["mask"] & ~pad.repeat_interleave(4, 0)).sum())
    assert b["num_masked"] == expected < int(b["mask"].sum())  # masked padding is not counted
    for k, s in enumerate(samples):
        assert torch.equal(b["mask"][4 * k:4 * k + 4], text_masks(cfg, T, seed=0, epoch=1, indices=[s["id"]]))
    one = col(_text_samples([20], [3]))
    assert one["padding_mask"] is None and one["num_masked"] == int(one["mask"].sum())
    with pytest.raises(ValueError, match="RandomMaskV2Config"):
        TextCollator(BlockMaskV2Config(), 0, PAD, MASK, frozenset(), 50)


def test_text_collator_v1_unchanged():
    col = TextCollator(TokenMaskConfig(), 0, PAD, MASK, frozenset({0, 1, 2, 3, 4}), 50)
    b = col(_text_samples([20, 12], [3, 1]))
    assert set(b) == {"source", "teacher_source", "padding_mask", "mask", "indices", "num_masked"}
    assert b["mask"].shape == (2, 20) and (b["source"][b["mask"]] == MASK).all()
    assert not (b["mask"] & b["padding_mask"]).any() and b["num_masked"] == int(b["mask"].sum())


def _image_samples(ids, epoch=1):
    return [{"id": i, "epoch": epoch, "image": torch.full((3, 8, 8), float(i)), "label": i % 2} for i in ids]


def test_image_collator_v2_block_masks():
    cfg = BlockMaskV2Config(mask_prob=0.8, mask_prob_adjust=0.07, mask_length=3, inverse_mask=True, clone_batch=2)
    col = ImageCollator(cfg, (14, 14), 5)
    b = col(_image_samples([0, 3, 9]))
    assert b["source"].shape == (3, 3, 8, 8) and b["padding_mask"] is None
    assert b["mask"].shape == (6, 196) and b["labels"].tolist() == [0, 1, 1] and b["indices"].tolist() == [0, 3, 9]
    assert b["num_masked"] == int(b["mask"].sum()) == 6 * (196 - int(196 * 0.2))
    for k, i in enumerate([0, 3, 9]):
        assert torch.equal(b["mask"][2 * k:2 * k + 2], image_masks(cfg, (14, 14), seed=5, epoch=1, indices=[i]))
    with pytest.raises(ValueError, match="square patch grid"):
        ImageCollator(cfg, (14, 12), 5)
    with pytest.raises(ValueError, match="BlockMaskV2Config"):
        ImageCollator(RandomMaskV2Config(), (14, 14), 5)


def test_image_collator_v1_unchanged():
    cfg = BlockMaskConfig(num_mask_patches=20, min_num_patches=4, max_num_patches=None)
    b = ImageCollator(cfg, (7, 7), 5)(_image_samples([0, 3]))
    expected = np.stack([block_mask((7, 7), cfg, seed=5, epoch=1, index=i) for i in (0, 3)])
    assert np.array_equal(b["mask"].numpy(), expected) and b["mask"].shape == (2, 49)
