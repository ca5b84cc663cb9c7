"""The benchmark suite's smoke mode end to end: structure and sanity of its outputs (not speed)."""

import json
import math

from experiments import bench


def test_bench_smoke_writes_results(tmp_path):
    bench.run(str(tmp_path), "smoke", log=lambda _: None)
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("machine", "command", "date", "latency", "poyo_ratio", "training", "data", "accuracy"):
        assert key in results, key
    assert results["machine"]["cores"] >= 1 and results["machine"]["jax"]
    assert set(results["latency"]) == set(bench.MODES["smoke"].latency_threads) == {"1"}
    for res in results["latency"].values():
        families = {r["family"] for r in res["rows"]}
        assert families == {"possm", "rerun", "binned", "wiener", "poyo"}
        for row in res["rows"]:
            for k in ("median_us", "p99_us"):
                assert math.isfinite(row[k]) and row[k] > 0, row
            assert row["p99_us"] >= row["median_us"]
        assert all(o["windows_per_s"] > 0 for o in res["offline"])
    assert results["training"]["windows_per_s"] > 0 and results["data"]["windows_per_second"] > 0
    summary = results["accuracy"]["summary"]
    assert {"possm_small", "poyo_d64", "binned_gru", "wiener"} <= set(summary)
    assert all(math.isfinite(s["r2_mean"]) for s in summary.values())
    speech = results["latency"]["1"]["streaming"]["speech"]
    assert speech["channels"] == 256 and speech["chunk_ms"] == 20 and speech["median_us"] > 0
    human = results["human_bci"]
    assert set(human["handwriting"]) == {"pca_knn", "binned_gru", "possm_small"}
    assert set(human["speech"]) == {"binned_gru"}  # smoke trains POSSM on handwriting only
    for task, low, high in (("handwriting", 0.0, 1.0), ("speech", 0.0, math.inf)):  # accuracy; PER may exceed 1
        for scores in human[task].values():
            assert low <= scores["mean"] <= high and len(scores["per_session"]) == 1, (task, scores)
    readme = (tmp_path / "README.md").read_text()
    for heading in ("Streaming latency", "Throughput", "Accuracy", "Human-BCI tasks", "Speech decoder streaming"):
        assert heading in readme
    assert (tmp_path / "accuracy_latency.png").stat().st_size > 0
    assert (tmp_path / "latency.png").stat().st_size > 0
