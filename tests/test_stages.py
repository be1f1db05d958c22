import json

import pandas as pd

from finsae.hashing import json_key
from finsae.pipeline.stages import run_stage
from finsae.report.html import table_html, write_report


def test_stage_cache_reruns_only_what_changed(tmp_path):
    calls = []

    def make(tag):
        def fn(folder):
            calls.append(tag)
            (folder / "out.txt").write_text(tag)
        return fn

    a = run_stage("a", {"x": 1}, [], make("a1"), root=tmp_path)
    b = run_stage("b", {"y": 2}, [a], make("b1"), root=tmp_path)
    assert not a.cached and not b.cached and calls == ["a1", "b1"]
    a2 = run_stage("a", {"x": 1}, [], make("a2"), root=tmp_path)
    b2 = run_stage("b", {"y": 2}, [a2], make("b2"), root=tmp_path)
    assert a2.cached and b2.cached and calls == ["a1", "b1"]
    a3 = run_stage("a", {"x": 9}, [], make("a3"), root=tmp_path)      # a changed ...
    b3 = run_stage("b", {"y": 2}, [a3], make("b3"), root=tmp_path)    # ... so b re-runs
    assert not a3.cached and not b3.cached and calls[-2:] == ["a3", "b3"]
    assert (b3.path / "out.txt").read_text() == "b3"
    assert json.loads((b3.path / "_stage.json").read_text())["deps"] == {"a": a3.key}


def test_interrupted_stage_is_not_reused(tmp_path):
    def boom(folder):
        (folder / "partial").write_text("x")
        raise KeyboardInterrupt

    try:
        run_stage("s", {}, [], boom, root=tmp_path)
    except KeyboardInterrupt:
        pass
    done = run_stage("s", {}, [], lambda f: (f / "ok").write_text("y"), root=tmp_path)
    assert not done.cached and (done.path / "ok").exists() and not (done.path / "partial").exists()


def test_json_key_order_free():
    assert json_key({"a": 1, "b": [1, 2]}) == json_key({"b": [1, 2], "a": 1})
    assert json_key({"a": 1}) != json_key({"a": 2})


def test_report_is_self_contained(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    from finsae.report.html import figure_html
    df = pd.DataFrame({"method": ["gics", "sae"], "mean_corr": [0.5, 0.4567]})
    p = write_report(tmp_path / "r.html", "T", [("Tables", [table_html(df), figure_html(tmp_path / "f.png", "cap")])],
                     meta={"vintage": "c2016"})
    text = p.read_text()
    assert "0.457" in text and "data:image/png;base64," in text and "c2016" in text
    assert "src=\"http" not in text
