"""Group-SAE maths: streaming angular distance, complete-linkage groups, AMAD, G choice."""

import math

import numpy as np
import pytest
import torch
from tiny_models import bpe_tokenizer, tiny_llama

from finsae.sae.grouping import (amad, choose_groups, cluster_layers, even_groups, is_contiguous)
from finsae.sae.layer_distance import AngularDistance, angular_distances


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


# ---------------------------------------------------------------- group and transfer SAEs

from finsae.sae import SAEConfig, TrainConfig, evaluate_reconstruction, load_sae  # noqa: E402
from finsae.sae.group_train import (  # noqa: E402
    group_tokens,
    mixed_layer_batches,
    train_group_sae,
    transfer_sae,
)
from finsae.sae.grouping import (  # noqa: E402
    Cost,
    equal_compute_width,
    lm_forward_flops,
    sae_train_flops,
    saving,
    training_cost,
)


def layered_acts(n_layers=3, n=768, d=16, seed=0):
    """Layers that share structure: layer l = base rotated a little more each layer."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=g) * torch.linspace(3, 0.5, d)
    out = [base]
    for _ in range(n_layers - 1):
        out.append(out[-1] + 0.3 * torch.randn(n, d, generator=g))
    return torch.stack(out) + 2.0


def small_tc(tokens=1536, lr=3e-3):
    return TrainConfig(tokens=tokens, batch_size=64, lr=lr, progress=False, massive_factor=None,
                       b_dec_init="mean")


def test_group_tokens_draw_each_token_from_a_layer_of_the_group():
    acts = torch.arange(4)[:, None, None].float().expand(4, 1000, 3) * 10 \
        + torch.arange(1000)[None, :, None] * 1e-3
    mixed = group_tokens(acts, [1, 3], seed=0)
    layer_of = (mixed[:, 0] / 10).floor()
    assert set(layer_of.tolist()) == {1.0, 3.0}                    # both, and only these
    assert 400 < int((layer_of == 1).sum()) < 600                  # uniform
    assert torch.allclose(mixed[:, 0] % 10, torch.arange(1000) * 1e-3, atol=1e-4)  # token n
    assert torch.equal(mixed, group_tokens(acts, [1, 3], seed=0))
    assert not torch.equal(mixed, group_tokens(acts, [1, 3], seed=1))
    streamed = torch.cat(list(mixed_layer_batches([acts[:, :500], acts[:, 500:]], [1, 3])))
    assert set((streamed[:, 0] / 10).floor().tolist()) == {1.0, 3.0}


def test_group_sae_trains_saves_and_loads(tmp_path):
    acts = layered_acts()
    cfg = SAEConfig(d_in=16, d_sae=32, k=4)
    r = train_group_sae(acts, [0, 1], cfg, small_tc(), out=tmp_path / "g01")
    loaded = load_sae(tmp_path / "g01")
    assert loaded.cfg.meta["layers"] == [0, 1]
    x = acts[1, :200]
    assert torch.allclose(loaded.reconstruct(x), r.sae.reconstruct(x), atol=1e-5)
    # it serves both layers of its group, better than it serves a layer it never saw
    fvu = [evaluate_reconstruction(loaded, acts[l], massive_factor=None)["fvu"] for l in range(3)]
    assert max(fvu[0], fvu[1]) < 0.9 and fvu[0] < fvu[2] and fvu[1] < fvu[2] + 0.05


def test_transfer_starts_from_the_neighbour_and_saves_and_loads(tmp_path):
    acts = layered_acts(n_layers=2, seed=3)
    cfg = SAEConfig(d_in=16, d_sae=32, k=4)
    src = train_group_sae(acts, [0], cfg, small_tc()).sae
    # lr = 0: the fine-tuned SAE must be the neighbour, exactly (scale fold/unfold round trip)
    frozen = transfer_sae(src, acts[1], small_tc(tokens=128, lr=0.0), out=tmp_path / "t0",
                          layer=1)
    x = acts[1, :300]
    assert torch.allclose(frozen.sae.reconstruct(x), src.reconstruct(x), atol=1e-3)
    assert torch.allclose(load_sae(tmp_path / "t0").reconstruct(x), src.reconstruct(x),
                          atol=1e-3)
    # fine-tuning improves on the neighbour, and the result round-trips through the folder
    tuned = transfer_sae(src, acts[1], small_tc(tokens=1536), out=tmp_path / "t1", layer=1)
    loaded = load_sae(tmp_path / "t1")
    assert loaded.cfg.meta["layer"] == 1
    assert torch.allclose(loaded.reconstruct(x), tuned.sae.reconstruct(x), atol=1e-5)
    before = evaluate_reconstruction(src, acts[1], massive_factor=None)["fvu"]
    after = evaluate_reconstruction(loaded, acts[1], massive_factor=None)["fvu"]
    assert after < before


def test_cost_model():
    assert sae_train_flops(10, 100, 2) == 2 * 10 * 100 + 8 * 2 * 10
    assert sae_train_flops(10, 100, 2, sparse=False) == 3 * 4 * 10 * 100
    assert lm_forward_flops(1000, 3, 8, 4) == 3 * (2000 + 64)
    per_layer = [[0], [1], [2], [3]]
    grouped = [[0, 1, 2], [3]]
    # separate runs: capture to each SAE's deepest layer; training once per SAE
    c = training_cost(per_layer, 10, 5.0, 1.0, shared_capture=False)
    assert c == Cost(capture=10 * (1 + 2 + 3 + 4), train=4 * 50)
    g = training_cost(grouped, 10, 5.0, 1.0, shared_capture=False)
    assert g == Cost(capture=10 * (3 + 4), train=2 * 50)
    assert saving(c, g) == pytest.approx(1 - 170 / 300)
    # shared capture: one forward through the deepest layer for everybody
    assert training_cost(grouped, 10, [5.0, 7.0], 1.0, shared_capture=True) == Cost(40, 120)
    # equal-compute width: 4 small SAEs cost about as much as 2 big ones
    m = equal_compute_width(64, 1024, 8, n_saes=2, n_layers=4, multiple=16)
    assert 4 * sae_train_flops(64, m, 8) <= 2 * sae_train_flops(64, 1024, 8)
    assert 4 * sae_train_flops(64, m + 16, 8) > 2 * sae_train_flops(64, 1024, 8)


# ----------------------------------------------------------------------- CLI and LM stream

def _sae_cli():
    import argparse

    from finsae.cli.sae_groups import add_commands
    p = argparse.ArgumentParser(prog="finsae sae")
    add_commands(p.add_subparsers(dest="sae_verb", required=True))
    return p


def test_groups_cli_json_from_a_distance_file(tmp_path, capsys):
    import json
    d = block_distances([3, 2], within=0.1, between=0.6)
    np.savetxt(tmp_path / "d.csv", d, delimiter=",")
    png = tmp_path / "heat.png"
    args = _sae_cli().parse_args(["groups", "--distances", str(tmp_path / "d.csv"), "--json",
                                  "--plot", str(png)])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen_g"] == 2 and out["groups"] == [[0, 1, 2], [3, 4], [5]]
    assert np.allclose(out["distances"], d)
    assert out["amad"]["2"] == pytest.approx(0.1) and out["amad"]["1"] == pytest.approx(0.6)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_groups_cli_shows_measured_results_beside_amad(tmp_path, capsys):
    import json

    import pandas as pd
    d = block_distances([3, 2], within=0.1, between=0.6)
    np.savetxt(tmp_path / "d.csv", d, delimiter=",")
    res = tmp_path / "res"
    res.mkdir()
    pd.DataFrame([{"G": 1, "n_saes": 2, "fvu_amad": 0.31, "fvu_even": 0.32, "ce_amad": 0.81,
                   "ce_even": 0.80, "saving_flops_separate_amad": 0.42,
                   "saving_flops_shared": 0.05},
                  {"G": 2, "n_saes": 3, "fvu_amad": 0.21, "fvu_even": 0.23, "ce_amad": 0.91,
                   "ce_even": 0.88, "saving_flops_separate_amad": 0.25,
                   "saving_flops_shared": 0.03}]).to_csv(res / "frontier.csv", index=False)
    pd.DataFrame([{"method": "per_layer", "n_saes": 6, "fvu": 0.19, "ce_loss_score": 0.93}]
                 ).to_csv(res / "methods.csv", index=False)
    pd.DataFrame([{"method": "forward", "share_of_scratch_budget_99pct": v} for v in
                  (0.1, 0.3, 0.2)]).to_csv(res / "transfer_reach.csv", index=False)
    base = ["groups", "--distances", str(tmp_path / "d.csv"), "--plot", "", "--results",
            str(res)]
    args = _sae_cli().parse_args(base + ["--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)["results"]
    assert [r["G"] for r in out["by_g"]] == [1, 2] and out["by_g"][1]["fvu_amad"] == 0.21
    assert out["per_layer"] == {"n_saes": 6, "fvu": 0.19, "ce_loss_score": 0.93}
    assert out["transfer"] == {"forward": pytest.approx(0.2)}
    args = _sae_cli().parse_args(base)
    assert args.func(args) == 0
    text = capsys.readouterr().out
    row2 = [line for line in text.splitlines() if line.startswith("  2 ")][0]
    assert "0.2100" in row2 and "0.2300" in row2 and "25.0%" in row2 and "chosen" in row2
    assert not [line for line in text.splitlines() if line.startswith("  3 ")]
    assert "forward 20.0%" in text
    from finsae.data.errors import DataError
    pd.DataFrame([{"method": "per_layer", "n_saes": 6, "fvu": 0.19}]
                 ).to_csv(res / "methods.csv", index=False)
    args = _sae_cli().parse_args(base)
    with pytest.raises(DataError, match="methods.csv.*missing column.*ce_loss_score"):
        args.func(args)
    (res / "methods.csv").unlink()
    with pytest.raises(DataError, match="methods.csv"):
        args.func(args)


def test_transfer_cli(tmp_path, capsys):
    import json

    from safetensors.torch import save_file
    acts = layered_acts(n_layers=2, seed=5)
    src = train_group_sae(acts, [0], SAEConfig(d_in=16, d_sae=32, k=4), small_tc(),
                          out=tmp_path / "sae0")
    save_file({"acts": acts[1].contiguous()}, str(tmp_path / "acts1.safetensors"))
    args = _sae_cli().parse_args(["transfer", str(tmp_path / "sae0"), "--activations",
                                  str(tmp_path / "acts1.safetensors"), "--out",
                                  str(tmp_path / "sae1"), "--layer", "1", "--tokens", "1024",
                                  "--batch-size", "64", "--lr", "3e-3", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fvu"] < out["fvu_no_finetune"] and out["tokens"] >= 1024
    assert load_sae(tmp_path / "sae1").cfg.meta["layer"] == 1
    del src


def test_model_stream_equals_direct_hidden_states():
    from finsae.lm import LM
    from finsae.sae.layer_distance import model_layer_distances

    texts = ["banks lend money to firms and households in Ohio",
             "chips for data centers and gaming",
             "oil and natural gas producer with pipelines in Texas and offshore wells", "airline"]
    tok = bpe_tokenizer(texts, vocab_size=120)
    model = tiny_llama(tok, n_layers=4, hidden=32, intermediate=64, max_positions=None)
    lm = LM.from_model(model, tok, name="tiny")
    got, info = model_layer_distances(lm, texts, batch_size=3, center="none",
                                      massive_factor=None)
    # direct: one text at a time, no padding, hidden_states[i + 1] = block i (the last entry
    # is after the final norm, so compare blocks 0..2)
    rows = []
    with torch.no_grad():
        for t in texts:
            ids = [tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]
            hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            rows.append(torch.stack([h[0, 1:] for h in hs[1:4]]))
    ref = direct_distance(torch.cat(rows, 1))
    assert info["n_tokens"] == sum(r.shape[1] for r in rows)
    np.testing.assert_allclose(got[:3, :3], ref, atol=1e-5)


def test_experiment_report_tokens_to_reach_and_frontier():
    """The Group-SAE experiment's report arithmetic (experiments/group_sae_parts/report.py)."""
    import importlib.util
    from pathlib import Path
    f = Path(__file__).resolve().parents[1] / "experiments" / "group_sae_parts" / "report.py"
    spec = importlib.util.spec_from_file_location("gs_report", f)
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    curve = [(200, 0.9), (0, 0.5), (100, 0.7)]           # order does not matter
    assert rep.tokens_to_reach(curve, 0.8) == pytest.approx(150)
    assert rep.tokens_to_reach(curve, 0.4) == 0.0         # the start already reaches it
    assert rep.tokens_to_reach(curve, 0.95) is None
    # first crossing, even if the curve dips afterwards
    assert rep.tokens_to_reach([(0, 0.5), (10, 1.0), (20, 0.6)], 0.75) == pytest.approx(5)
    rows = ([{"layer": 3, "method": "scratch", "tokens": t, "ce_loss_score": v}
             for t, v in ((50, 0.5), (100, 0.9), (200, 1.0))]
            + [{"layer": 3, "method": "forward", "tokens": t, "ce_loss_score": v}
               for t, v in ((0, 0.9), (50, 0.98), (200, 1.0))]
            + [{"layer": 3, "method": "backward", "tokens": t, "ce_loss_score": v}
               for t, v in ((0, 0.97), (200, 0.98))])
    got = {r["method"]: r for r in rep.transfer_reach(rows, 200)}
    assert got["forward"]["tokens_to_95pct"] == pytest.approx(50 * 0.05 / 0.08)
    assert got["forward"]["share_of_scratch_budget_99pct"] == pytest.approx(
        (50 + 150 * 0.01 / 0.02) / 200)
    assert got["backward"]["tokens_to_95pct"] == 0.0 and got["backward"]["tokens_to_99pct"] is None
    assert got["scratch"]["tokens_to_95pct"] == pytest.approx(100 + 100 * 0.05 / 0.1)
    summ = [{"family": f, "G": g, "n_saes": g + 1, "fvu": fvu, "ce_loss_score": ce,
             "saving_flops_separate_runs": 0.3, "saving_flops_shared_capture": 0.1,
             "same_groups_as_even": same}
            for f, g, fvu, ce, same in (("amad", 1, 0.3, 0.8, True), ("even", 1, 0.3, 0.8, None),
                                        ("amad", 2, 0.2, 0.9, False),
                                        ("even", 2, 0.25, 0.85, None),
                                        ("amad", 3, 0.1, 0.95, False))]
    fr = rep.frontier(summ)
    assert [r["G"] for r in fr] == [1, 2]                 # G=3 has no even counterpart
    assert fr[1]["fvu_amad_minus_even"] == pytest.approx(-0.05)
    assert fr[0]["same_groups"] and not fr[1]["same_groups"]
