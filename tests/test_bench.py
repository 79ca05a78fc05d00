"""The throughput benchmark runs end to end and writes positive rates for every section."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench_train.py"


@pytest.mark.slow
def test_quick_benchmark_writes_positive_rates(tmp_path):
    out = tmp_path / "b.json"
    env = {**os.environ, "TQDM_DISABLE": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rungs", "tiny", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())

    assert res["ceiling"]["best_gflops_per_s"] > 0
    assert list(res["rungs"]) == ["tiny"]
    tiny = res["rungs"]["tiny"]
    for key in (
        "steps_per_s",
        "tokens_per_s",
        "gflops_per_s",
        "ceiling_fraction",
        "decode_items_per_s",
        "decode_no_cache_items_per_s",
        "cache_speedup",
    ):
        assert tiny[key] > 0, key
    assert tiny["params"] > tiny["matmul_params"] > 0
    assert tiny["tokens_per_s"] == pytest.approx(tiny["steps_per_s"] * 128 * res["seq_len"])

    assert [(p["rung"], p["batch"]) for p in res["population"]] == [("tiny", 16), ("tiny", 128)]
    for p in res["population"]:
        assert p["vmap_member_steps_per_s"] > 0 and p["serial_member_steps_per_s"] > 0 and p["speedup"] > 0
    assert "tiny" in proc.stdout  # the table is printed too
