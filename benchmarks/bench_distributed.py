"""Data-parallel fit on MPI: one process with 2 BLAS threads against 2 ranks with 1 thread each.

Run:  python benchmarks/bench_distributed.py [--write] [--rounds 3]     (needs pip install -e '.[mpi]')
Each case is a fit on the MNIST sample repeated to 16,000 examples (784-256-128-10, Adam, 10 epochs after one
warm-up epoch) at a global batch of 256, 1024 and 4096, timed inside the job; the time rank 0 waits for the
allreduces is timed too. Two ranks run with the gradients' allreduce overlapping the backward pass (buckets of
256 KiB, the default) and without (one sum after the backward pass). The cases are interleaved over the rounds
and each reports its median. Then the ring-allreduce cost model for more ranks and faster networks, from the
measured compute speed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_section  # noqa: E402

PARAMETERS = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
EPOCHS = 10
REPEATS = 4  # the MNIST sample's 4,000 examples, 4 times: a batch of 4,096 makes 4 steps an epoch
BATCHES = (256, 1024, 4096)


def job(batch, out):
    """Runs inside each process of a case: times the fit and the allreduce, rank 0 writes the numbers."""
    import numpy as np
    import backprop as bp
    from common import mnist_like
    bp.distribute.init()
    x, y, _, _ = mnist_like()
    x, y = np.tile(x.astype(np.float32), (REPEATS, 1)), np.tile(y, REPEATS)
    bp.random.set_seed(0)
    model = bp.Sequential([bp.layers.Input(shape=(784,)), bp.layers.Dense(256, activation="relu"),
                           bp.layers.Dense(128, activation="relu"), bp.layers.Dense(10)])
    model.compile(optimizer=bp.optimizers.Adam(1e-3), loss=bp.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # warm-up: traces, page faults
    spent = [0.0]
    workers = bp.distribute.current()
    if workers is not None:
        wait = workers.wait

        def timed_wait(request, what="the gradients' allreduce"):
            start = time.perf_counter()
            wait(request, what)
            spent[0] += time.perf_counter() - start
        workers.wait = timed_wait
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=EPOCHS, verbose=0)
    seconds = time.perf_counter() - start
    if bp.distribute.is_main():
        steps = EPOCHS * -(-len(x) // batch)
        Path(out).write_text(json.dumps({"samples_per_s": EPOCHS * len(x) / seconds,
                                         "allreduce_ms_per_step": spent[0] / steps * 1e3,
                                         "step_ms": seconds / steps * 1e3}))


def case(batch, ranks, threads, bucket_kb=256):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "BACKPROP_MPI_BUCKET_KB": str(bucket_kb)}
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.json")
        command = [sys.executable, __file__, "--job", str(batch), out]
        if ranks > 1:
            command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks)] + command
        subprocess.run(command, env=env, check=True, timeout=600)
        return json.loads(Path(out).read_text())


CASES = {"one": (1, 1), "two_threads": (1, 2), "overlapped": (2, 1), "after": (2, 1, 0)}


def measure(batch, rounds):
    """Each case's median over ``rounds`` interleaved runs (by samples/s, with its allreduce time)."""
    runs = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, arguments in CASES.items():
            runs[name].append(case(batch, *arguments))
    return {name: sorted(results, key=lambda r: r["samples_per_s"])[len(results) // 2] for name, results in runs.items()}


def ring_allreduce_ms(ranks, gbit_per_s, latency_us, parameters=PARAMETERS, bytes_per_value=4):
    """2 (N - 1) / N of the buffer over the link, plus 2 (N - 1) message latencies."""
    bandwidth = gbit_per_s * 1e9 / 8
    return (2 * (ranks - 1) / ranks * parameters * bytes_per_value / bandwidth + 2 * (ranks - 1) * latency_us * 1e-6) * 1e3


CLASSES = 10
FIXED_MS = 0.05  # per step, whatever the network: three MPI calls and their Python (an assumption, stated)


def step_communication_ms(ranks, gbit_per_s, latency_us, batch, gather_predictions=False):
    """Everything a step sends, as fit does it: the gradients' ring allreduce, the loss's allreduce (latencies
    only) and a fixed cost. Metrics are added up across ranks once an epoch, not per step; with
    ``gather_predictions`` the ring allgather of the batch's predictions that every step made before ((N - 1) / N
    of batch x classes float32 values, N - 1 latencies)."""
    bandwidth, latency = gbit_per_s * 1e9 / 8, latency_us * 1e-6
    gather = ((ranks - 1) / ranks * batch * CLASSES * 4 / bandwidth + (ranks - 1) * latency) * 1e3
    loss = 2 * (ranks - 1) * latency * 1e3
    return ring_allreduce_ms(ranks, gbit_per_s, latency_us) + loss + FIXED_MS + (gather if gather_predictions else 0)


def smallest_efficient_batch(ranks, gbit_per_s, latency_us, samples_per_s_per_rank, efficiency=0.8,
                             gather_predictions=False):
    """The global batch at which compute / (compute + communication) reaches ``efficiency`` (None: never, a
    predictions' gather growing with the batch as fast as the compute)."""
    k = efficiency / (1 - efficiency)
    fixed = step_communication_ms(ranks, gbit_per_s, latency_us, 0, gather_predictions)
    per_example = step_communication_ms(ranks, gbit_per_s, latency_us, 1, gather_predictions) - fixed
    room = 1e3 / (ranks * samples_per_s_per_rank) - k * per_example
    return k * fixed / room if room > 0 else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        return job(int(args.job[0]), args.job[1])
    lines = ["| global batch | 1 process, 1 thread | 1 process, 2 threads | 2 ranks × 1 thread, overlapped | "
             "allreduce wait per step | efficiency | 2 ranks, one sum after the backward pass | allreduce wait "
             "per step | efficiency | overlapped / after |", "|---|---|---|---|---|---|---|---|---|---|"]
    single_thread_rate = None
    for batch in BATCHES:
        r = measure(batch, args.rounds)
        one, overlapped, after = r["one"]["samples_per_s"], r["overlapped"], r["after"]
        lines.append(f"| {batch} | {one:,.0f} samples/s | {r['two_threads']['samples_per_s']:,.0f} | "
                     f"{overlapped['samples_per_s']:,.0f} | {overlapped['allreduce_ms_per_step']:.2f} ms of "
                     f"{overlapped['step_ms']:.2f} ms | {overlapped['samples_per_s'] / one / 2:.0%} | "
                     f"{after['samples_per_s']:,.0f} | {after['allreduce_ms_per_step']:.2f} ms of {after['step_ms']:.2f} ms"
                     f" | {after['samples_per_s'] / one / 2:.0%} | "
                     f"{overlapped['samples_per_s'] / after['samples_per_s']:.3f} |")
        print(lines[-1], flush=True)
        if batch == 1024:
            single_thread_rate = one
    rate = single_thread_rate
    model = ["", f"Communication model for the {PARAMETERS:,} float32 parameters ({PARAMETERS * 4 / 1e6:.2f} MB), with "
             f"one rank computing {rate:,.0f} samples/s (the 1-thread rate at batch 1024 above). Per step: the gradients' ring "
             "allreduce (2 (N-1)/N of the buffer, 2 (N-1) latencies), the loss's allreduce (2 (N-1) latencies) and "
             f"{FIXED_MS} ms fixed; metrics are added up across ranks once an epoch. Links full duplex, compute and "
             "communication not overlapped. The smallest global batch for 80 % efficiency, and the same with the "
             "ring allgather of the predictions that every step made before metrics were reduced per epoch "
             f"((N-1)/N of batch x {CLASSES} float32, N-1 latencies).", "",
             "| ranks | 10 Gbit/s, 5 µs: batch for 80 % | with the per-step gather | 100 Gbit/s, 2 µs: batch for 80 % "
             "| with the per-step gather |", "|---|---|---|---|---|"]
    for ranks in (2, 8, 64):
        cells = []
        for gbit, latency in ((10, 5), (100, 2)):
            for gather in (False, True):
                batch = smallest_efficient_batch(ranks, gbit, latency, rate, gather_predictions=gather)
                cells.append("never" if batch is None else f"{batch:,.0f}")
        model.append(f"| {ranks} | " + " | ".join(cells) + " |")
    print("\n".join(model))
    if args.write:
        write_section("distributed", ["Command: `python benchmarks/bench_distributed.py --write` (MPICH from the "
                                      "`mpi` extra; fit on the MNIST sample repeated to 16,000 examples, "
                                      "784-256-128-10, Adam, 10 timed epochs; median of "
                                      f"{args.rounds} interleaved rounds; efficiency = speed-up over 1 process with "
                                      "1 thread / 2).",
                                      "", *lines, *model], "Data-parallel fit on MPI")


if __name__ == "__main__":
    main()
