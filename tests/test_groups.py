"""Group-SAE maths: streaming angular distance, complete-linkage groups, AMAD, G choice."""

import math

import numpy as np
import pytest
import torch

from finsae.sae.groups import (AngularDistance, amad, angular_distances, choose_groups,
                               cluster_layers, even_groups, is_contiguous)


def block_distances(sizes, within=0.05, between=0.5, last_extra=0.3):
    """Layers in blocks of the given sizes: distance `within` inside a block, `between` across
    blocks; one final layer at distance between + last_extra from everything."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    d = np.where(labels[:, None] == labels[None], within, between).astype(float)
    n = len(labels) + 1
    out = np.full((n, n), between + last_extra)
    out[:-1, :-1] = d
    np.fill_diagonal(out, 0.0)
    return out


def direct_distance(x: torch.Tensor) -> np.ndarray:
    """[L, N, d] -> mean over tokens of arccos(cos)/pi, computed in one go in float64."""
    u = torch.nn.functional.normalize(x.double(), dim=-1)
    cos = torch.einsum("lnd,mnd->lmn", u, u).clamp(-1, 1)
    d = (torch.arccos(cos) / math.pi).mean(-1).numpy()
    np.fill_diagonal(d, 0)
    return d


def test_block_structure_gives_the_blocks_and_known_amad():
    d = block_distances([3, 4, 2], within=0.05, between=0.5)     # 10 layers, last = 9
    r = choose_groups(d, threshold=0.2)
    assert r.chosen_g == 3
    assert r.groups == [[0, 1, 2], [3, 4, 5, 6], [7, 8], [9]]
    assert r.groups[-1] == [9]                       # the last layer alone
    assert r.amad[3] == pytest.approx(0.05)
    # two groups: two blocks merged (diameter 0.5) and one block (0.05)
    assert r.amad[2] == pytest.approx((0.5 + 0.05) / 2)
    assert r.amad[1] == pytest.approx(0.5)
    assert r.amad[9] == 0.0
    assert set(r.amad) == set(range(1, 10))          # every G over layers 0..8
    assert r.contiguous


def test_threshold_picks_the_smallest_g_below_it():
    # a line of layers: d = |i - j| / 20, so a run of n layers has diameter (n - 1) / 20
    n = 11
    pos = np.arange(n, dtype=float)
    d = np.abs(pos[:, None] - pos[None]) / 20
    r = choose_groups(d, threshold=0.2)
    assert all(r.amad[g] >= r.amad[g + 1] - 1e-12 for g in range(1, 10))   # non-increasing here
    assert r.amad[r.chosen_g] < 0.2
    assert all(r.amad[g] >= 0.2 for g in range(1, r.chosen_g))
    assert r.amad[1] == pytest.approx(9 / 20)        # layers 0..9 in one group
    loose = choose_groups(d, threshold=0.5)
    assert loose.chosen_g == 1 and loose.groups == [list(range(10)), [10]]
    strict = choose_groups(d, threshold=1e-9)
    assert strict.chosen_g == 10 and strict.groups == [[i] for i in range(11)]


def test_last_layer_alone_even_when_it_is_close():
    d = block_distances([4], within=0.01, between=0.02, last_extra=-0.01)   # last at 0.01 too
    r = choose_groups(d, threshold=0.2)
    assert r.groups == [[0, 1, 2, 3], [4]]
    r2 = choose_groups(d, threshold=0.2, last_alone=False)
    assert r2.groups == [[0, 1, 2, 3, 4]] and not r2.last_alone


def test_complete_linkage_uses_the_maximum_not_the_minimum():
    # chain 0-1-2-3 with small steps: single linkage would join everything first; complete
    # linkage sees that 0..3 spans 0.9 and splits at the far end
    d = np.array([[0, .1, .5, .9], [.1, 0, .2, .6], [.5, .2, 0, .3], [.9, .6, .3, 0]])
    assert cluster_layers(d, 2) == [[0, 1], [2, 3]]
    assert amad(d, [[0, 1], [2, 3]]) == pytest.approx((0.1 + 0.3) / 2)


def test_contiguous_option_keeps_runs():
    # layers 0 and 2 are alike, layer 1 is far from both: unconstrained linkage pairs 0 with 2
    d = np.array([[0, .9, .1, .9], [.9, 0, .9, .8], [.1, .9, 0, .9], [.9, .8, .9, 0]])
    free = cluster_layers(d, 2, layers=[0, 1, 2])
    assert free == [[0, 2], [1]] and not is_contiguous(free)
    runs = cluster_layers(d, 2, layers=[0, 1, 2], contiguous=True)
    assert is_contiguous(runs) and sorted(sum(runs, [])) == [0, 1, 2]


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError):
        choose_groups(np.ones((3, 4)))
    with pytest.raises(ValueError):
        choose_groups(np.array([[0, 1.0], [0.5, 0]]))


def test_even_groups():
    assert even_groups(10, 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert even_groups(5, 2, last_alone=False) == [[0, 1], [2, 3, 4]]
    g = even_groups(30, 7)
    assert sorted(sum(g, [])) == list(range(30)) and g[-1] == [29] and len(g) == 8


def test_streaming_distance_equals_direct():
    torch.manual_seed(0)
    x = torch.randn(5, 700, 24) + torch.linspace(0, 2, 5)[:, None, None]
    acc = AngularDistance(5, center="none")
    for s in range(0, 700, 128):                     # uneven last batch
        acc.update(x[:, s:s + 128])
    assert acc.n_tokens == 700
    np.testing.assert_allclose(acc.result(), direct_distance(x), atol=1e-10)
    # a list of per-layer tensors with [batch, seq, d] shapes and a token mask
    mask = torch.rand(700) > 0.3
    acc2 = AngularDistance(5, center="none")
    acc2.update([x[l].view(7, 100, 24) for l in range(5)], mask=mask.view(7, 100))
    np.testing.assert_allclose(acc2.result(), direct_distance(x[:, mask]), atol=1e-10)


def test_running_centring_matches_its_definition():
    torch.manual_seed(1)
    x = torch.randn(3, 300, 8) * 0.5 + 4.0          # a large shared mean
    got, n = angular_distances((x[:, s:s + 100] for s in range(0, 300, 100)), 3)
    assert n == 300
    # by hand: batch b is centred by the mean of tokens 0 .. end of batch b
    parts = [x[:, s:s + 100] - x[:, :s + 100].double().mean(1, keepdim=True).float()
             for s in range(0, 300, 100)]
    np.testing.assert_allclose(got, direct_distance(torch.cat(parts, 1)), atol=1e-6)
    # one batch: plain centring by the mean; and centring changes the answer
    one, _ = angular_distances([x], 3)
    np.testing.assert_allclose(one, direct_distance(x - x.mean(1, keepdim=True)), atol=1e-6)
    raw, _ = angular_distances([x], 3, center="none")
    assert raw.max() < 0.1 < one.max()


def test_max_tokens_stops_early():
    x = torch.randn(2, 1000, 4)
    _, n = angular_distances((x[:, s:s + 100] for s in range(0, 1000, 100)), 2, max_tokens=250)
    assert n == 300
