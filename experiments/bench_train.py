"""Throughput of the real trainer and decoder on each ladder rung, against a matmul ceiling.

What it measures (compile time excluded everywhere: one warm-up call, then each timed call
ends in ``block_until_ready``; the best of the timed calls is reported, as the least
disturbed by other jobs on a shared machine):

- ceiling: FLOP/s of a jitted float32 ``n x n`` matmul (2 n^3 FLOPs), best over sizes.
- train: one jitted ``sandbag.train.train_chunk`` of ``S`` AdamW steps, population of one,
  on data from ``sandbag.data.ladder_sampler`` already on the device: on one device, and
  (``all_devices_steps_per_s``) on every device the way ``sandbag.train.train`` runs it,
  params replicated and each batch split over the devices. ``--cpu-devices`` gives JAX's CPU
  backend its devices as ``cpu_devices`` does for a run (default ``auto``: one per core, at
  most 4), so that column is the rate the pipeline trains at. With ``L`` the forward
  length (``task.seq_len - 1``: the trainer feeds ``tokens[:, :-1]``), ``B`` the batch,
  ``N`` the matmul weights (qkv, out, up, down per block plus the head; embeddings,
  biases and LayerNorms excluded) and ``d`` the width, FLOPs per step are

      6 * N * B * L  +  12 * n_layers * L^2 * d * B

  (forward + backward = 3x forward; attention scores and the weighted sum cost
  2 * 2 * L^2 * d per layer and sequence forward; the full L x L square is counted because
  the model computes it before masking), less what the trainer skips: the loss reads the
  ``A`` answer positions only, so the final block's attention output, out projection and
  MLP and the head run for ``A`` of the ``L`` positions (``Transformer(..., last=A)``).
  tokens/s = B * L * steps/s.
- decode: ``sandbag.decode.generate`` of ``task.answer_len`` tokens for prompts
  ``[context] prompt``, with and without the key/value cache; items/s.
- population: ``M`` members in one vmapped chunk vs the same members one at a time
  (populations of one), on one device; member-steps/s = members * S / seconds.

    python experiments/bench_train.py --rungs nano tiny small medium
    taskset -c 0 python experiments/bench_train.py --cpu-devices 1 --rungs medium   # one core
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from sandbag import parallel
from sandbag.data import ladder_sampler
from sandbag.decode import generate
from sandbag.models import ModelConfig, Transformer, param_count
from sandbag.run import use_cpu_devices
from sandbag.tasks import make_task
from sandbag.train import init_population, loss_positions, make_optimizer, token_loss, train_chunk

RUNG_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
# One optimizer object for every call: ``train_chunk`` takes it as a static argument, hashed
# by identity (``make_optimizer`` is cached, so equal settings give the same object).
TX = make_optimizer()


def best_seconds(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls, after one untimed warm-up."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def load_rungs(task) -> dict[str, ModelConfig]:
    """Every ``conf/model/*.yaml`` as the ladder builds it for ``task``, smallest first."""
    rungs = [ModelConfig.of_rung(OmegaConf.load(path), task.vocab_size) for path in RUNG_DIR.glob("*.yaml")]
    return {c.name: c for c in sorted(rungs, key=matmul_params)}


def matmul_params(cfg: ModelConfig) -> int:
    d = cfg.d_model
    return cfg.n_layers * (3 * d * d + d * d + 2 * cfg.mlp_ratio * d * d) + d * cfg.vocab_size


def step_flops(cfg: ModelConfig, batch: int, L: int, last: int | None = None) -> float:
    """FLOPs of one step; with ``last``, the final block past its qkv projection and the head
    run for the last ``last`` positions only."""
    k, d = last or L, cfg.d_model
    skipped = ((1 + 2 * cfg.mlp_ratio) * d * d + d * cfg.vocab_size) * (L - k)  # per sequence
    return 6 * (matmul_params(cfg) * L - skipped) * batch + 12 * ((cfg.n_layers - 1) * L + k) * L * d * batch


def matmul_ceiling(sizes: list[int], repeats: int) -> dict:
    mm = jax.jit(jnp.matmul)
    out = {}
    for n in sizes:
        a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in range(2))
        out[str(n)] = 2 * n**3 / best_seconds(partial(mm, a, b), repeats) / 1e9
    return {"gflops_per_s": out, "best_gflops_per_s": max(out.values())}


class Chunk:
    """The trainer's jitted chunk on fixed device data; each call continues from the last."""

    def __init__(
        self, cfg: ModelConfig, task, seeds: list[int], batch: int, steps: int, last: bool = True, mesh=None
    ):
        self.graphdef, self.params = init_population(cfg, seeds)
        self.opt_state = jax.vmap(TX.init)(self.params)
        sample = ladder_sampler(task, seeds, batch, steps)
        self.tokens, self.weights = (np.stack(x) for x in zip(*(sample(m, 0) for m in range(len(seeds)))))
        if mesh is not None:  # as sandbag.train.train: replicated state, each batch split over the devices
            self.params, self.opt_state = jax.device_put(
                (self.params, self.opt_state), parallel.replicated(mesh)
            )
            self.tokens, self.weights = (
                parallel.put_batch(mesh, x, axis=2) for x in (self.tokens, self.weights)
            )
        else:
            self.tokens, self.weights = jnp.asarray(self.tokens), jnp.asarray(self.weights)
        self.lrs = jnp.full(steps, 1e-3, jnp.float32)  # each step's learning rate: data, not program
        self.last = loss_positions(np.asarray(self.weights)) if last else None  # as sandbag.train.train

    def __call__(self):
        self.params, self.opt_state, losses = train_chunk(
            self.graphdef,
            self.params,
            self.opt_state,
            self.tokens,
            self.weights,
            self.lrs,
            TX,
            token_loss,
            last=self.last,
        )
        return losses


def bench_train(cfg, task, batch, steps, repeats, ceiling) -> dict:
    chunk = Chunk(cfg, task, [0], batch, steps)
    step_s = best_seconds(chunk, repeats) / steps
    mesh = parallel.data_mesh()
    all_step_s = (
        step_s
        if mesh is None
        else best_seconds(Chunk(cfg, task, [0], batch, steps, mesh=mesh), repeats) / steps
    )
    L = task.seq_len - 1
    flops = step_flops(cfg, batch, L, chunk.last) / step_s
    return dict(
        params=param_count(chunk.params),
        matmul_params=matmul_params(cfg),
        steps_per_s=1 / step_s,
        tokens_per_s=batch * L / step_s,
        gflops_per_s=flops / 1e9,
        ceiling_fraction=flops / ceiling,
        devices=jax.device_count(),
        all_devices_steps_per_s=1 / all_step_s,
    )


def bench_decode(cfg, task, batch, repeats) -> dict:
    graphdef, params = nnx.split(Transformer(cfg, nnx.Rngs(params=0)))
    items = task.generate(np.random.default_rng(0), batch, np.resize(task.difficulties, batch))
    prompts = jnp.asarray(items.tokens()[:, : 1 + task.prompt_len])
    rate = {}
    for use_cache in (True, False):
        call = partial(
            generate, graphdef, params, prompts, jax.random.key(0), task.answer_len, use_cache=use_cache
        )
        rate[use_cache] = batch / best_seconds(call, repeats)
    return dict(
        decode_items_per_s=rate[True],
        decode_no_cache_items_per_s=rate[False],
        cache_speedup=rate[True] / rate[False],
    )


def bench_population(cfg, task, members, batch, steps, repeats) -> dict:
    seeds = list(range(members))
    together = Chunk(cfg, task, seeds, batch, steps)
    alone = [Chunk(cfg, task, [s], batch, steps) for s in seeds]
    vmapped = members * steps / best_seconds(together, repeats)
    serial = members * steps / best_seconds(lambda: [c() for c in alone], repeats)
    return dict(
        rung=cfg.name,
        members=members,
        batch=batch,
        vmap_member_steps_per_s=vmapped,
        serial_member_steps_per_s=serial,
        speedup=vmapped / serial,
    )


def cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(title: str, rows: list[dict]) -> Table:
    """Columns are the JSON keys, so the printed table and the file cannot disagree."""
    t = Table(title=title)
    for key in rows[0]:
        t.add_column(key.replace("_per_s", "/s").replace("_", " "), justify="right")
    for r in rows:
        t.add_row(*map(cell, r.values()))
    return t


def print_tables(res: dict) -> None:
    console = Console()
    console.width = max(console.width, 160)
    ceiling = res["ceiling"]
    sizes = ", ".join(f"{n}: {v:.1f}" for n, v in ceiling["gflops_per_s"].items())
    console.print(f"matmul ceiling {ceiling['best_gflops_per_s']:.1f} GFLOP/s (float32 n x n; {sizes})")
    a = res["args"]
    title = f"train (batch {a['batch']}, L {res['seq_len']}), decode (batch {a['decode_batch']})"
    console.print(table(title, [{"rung": name, **r} for name, r in res["rungs"].items()]))
    console.print(table("population: one vmapped chunk vs the members one by one", res["population"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="signed_sum")
    ap.add_argument("--rungs", nargs="+", help="rung names (default: all but large)")
    ap.add_argument("--all", action="store_true", help="include the large rung")
    ap.add_argument(
        "--pop-rung", nargs="+", help="rungs for the population benchmark (default: two smallest)"
    )
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--decode-batch", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="few steps and repeats: a test, not a measurement")
    ap.add_argument(
        "--cpu-devices", default="auto", help="the CPU backend's devices, as cpu_devices in a run"
    )
    ap.add_argument("--out", default="bench_train.json")
    args = ap.parse_args()
    if args.cpu_devices != "auto" and not (args.cpu_devices.isdigit() and int(args.cpu_devices) >= 1):
        ap.error(f"--cpu-devices {args.cpu_devices!r}: must be auto or a whole number of devices, 1 or more")
    use_cpu_devices(args.cpu_devices, args.batch)  # before anything touches JAX's backend

    task = make_task(args.task)
    ladder = load_rungs(task)
    names = args.rungs or [n for n in ladder if args.all or n != "large"]
    unknown = set(names + (args.pop_rung or [])) - set(ladder)
    if unknown:
        ap.error(f"unknown rungs {sorted(unknown)}; valid: {list(ladder)}")
    names = sorted(names, key=list(ladder).index)
    steps, repeats, sizes = (5, 2, [512, 1024]) if args.quick else (50, 3, [1024, 2048])

    shape = dict(seq_len=task.seq_len - 1, answer_len=task.answer_len, steps_per_call=steps)
    res = {"args": vars(args), **shape, "backend": jax.default_backend()}
    res["ceiling"] = matmul_ceiling(sizes, repeats)
    res["rungs"] = {}
    for name in names:
        cfg = ladder[name]
        ceiling = res["ceiling"]["best_gflops_per_s"] * 1e9
        res["rungs"][name] = bench_train(cfg, task, args.batch, steps, repeats, ceiling)
        res["rungs"][name] |= bench_decode(cfg, task, args.decode_batch, repeats)
    res["population"] = [
        bench_population(ladder[name], task, args.members, batch, steps, repeats)
        for name in (args.pop_rung or names[:2])
        for batch in (16, 128)
    ]
    Path(args.out).write_text(json.dumps(res, indent=2))
    print_tables(res)


if __name__ == "__main__":
    main()
