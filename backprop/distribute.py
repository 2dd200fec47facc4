"""Data-parallel training on MPI: ``mpiexec -n 4 python train.py``, with ``bp.distribute.init()`` once.

In a single process everything here is a no-op and mpi4py is never imported. Under ``mpiexec`` each
process (rank) holds the whole model; ``fit`` gives each rank a contiguous shard of every global batch,
sums the shards' gradients (each weighted by its share of the batch, so a ragged last batch is exact)
in buckets of the flat gradient buffer while the backward pass goes on, sums the losses, and adds the
ranks' metric states up once an epoch, so that every rank keeps the same History
(backprop.training.parallel). Rank 0's initial
weights and shuffled order are broadcast; only rank 0 prints and writes files. An exception on any
rank aborts the whole job (MPI_Abort) instead of leaving the others waiting in a collective, and so does
a rank that waits in a collective for longer than BACKPROP_MPI_TIMEOUT seconds (300 by default): a stalled
rank ends the job with a message instead of a hang.
"""
import os
import sys
import time

from backprop.xp import np

# Variables that MPI launchers set in the processes they start (MPICH/Hydra, Open MPI, PMIx, Intel MPI).
_LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
_workers = None


class WorkersError(ValueError):
    """A fit that cannot be split across the job's ranks (fewer examples, or a smaller batch, than ranks)."""


class Workers:
    """The ranks of one job and the collectives training needs, on an mpi4py communicator. ``bucket_bytes``:
    the size of the parts the gradients are summed in while the backward pass goes on (0: one sum after it)."""

    def __init__(self, comm, timeout=None, bucket_bytes=None):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.timeout = stall_timeout() if timeout is None else timeout
        self.bucket_bytes = bucket_size() if bucket_bytes is None else bucket_bytes
        from mpi4py import MPI
        self._mpi = MPI

    def _wait(self, request, what):
        """Wait for a started collective; a rank that stays silent for ``timeout`` seconds (stalled, or stopped
        without an error) ends the job with a message, where a blocking call would wait for ever."""
        if request.Test():
            return
        started = time.monotonic()
        while not request.Test():
            waited = time.monotonic() - started
            if waited > self.timeout:
                sys.stderr.write(f"backprop rank {self.rank}: no answer from the other ranks in {what} for "
                                 f"{waited:.0f} s (BACKPROP_MPI_TIMEOUT={self.timeout:g}): a rank stalled; "
                                 "ending the job\n")
                sys.stderr.flush()
                time.sleep(0.5)  # let the launcher forward this rank's output before MPI_Abort tears the job down
                self.abort(1)
            if waited > 1.0:  # spin as a blocking MPI call would (no added latency), then let the core go
                time.sleep(0.01)

    def counts(self, n):
        """How many of n examples each rank takes: contiguous parts, the first n % size ranks one more."""
        base, extra = divmod(n, self.size)
        return [base + (r < extra) for r in range(self.size)]

    def shard(self, n):
        """[start, stop) of this rank's part of n examples."""
        counts = self.counts(n)
        start = sum(counts[:self.rank])
        return start, start + counts[self.rank]

    def broadcast_(self, array):
        """Overwrite ``array`` in place with rank 0's values."""
        self._wait(self.comm.Ibcast(array, root=0), "a broadcast")
        return array

    def share_bytes(self, data):
        """Rank 0's ``data`` (bytes, or None) on every rank: what one node's disk holds, the others need not."""
        size = np.array([-1 if data is None else len(data)], dtype=np.int64)
        self.broadcast_(size)
        if size[0] < 0:
            return None
        buffer = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == 0 else np.empty(int(size[0]), np.uint8)
        return self.broadcast_(buffer).tobytes()

    def sum_(self, array):
        """Overwrite ``array`` in place with its sum over the ranks."""
        self.wait(self.start_sum(array))
        return array

    def start_sum(self, array):
        """Start overwriting ``array`` (contiguous) in place with its sum over the ranks: a request for ``wait``."""
        return self.comm.Iallreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)

    def wait(self, request, what="the gradients' allreduce"):
        self._wait(request, what)

    def gather_rows(self, rows, counts, row_shape, dtype):
        """Every rank's ``rows`` (counts[r] of them), concatenated in rank order, on every rank."""
        width = int(np.prod(row_shape, dtype=np.int64))
        out = np.empty((sum(counts),) + tuple(row_shape), dtype=dtype)
        sizes = [c * width for c in counts]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
        send = np.ascontiguousarray(rows, dtype=dtype).ravel()
        self._wait(self.comm.Iallgatherv(send, [out.reshape(-1), (sizes, offsets)]), "gathering the predictions")
        return out

    def abort(self, code=1):
        self.comm.Abort(code)


def stall_timeout():
    """Seconds a rank waits in a collective before it ends the job: BACKPROP_MPI_TIMEOUT, 300 by default."""
    text = os.environ.get("BACKPROP_MPI_TIMEOUT", "300")
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"BACKPROP_MPI_TIMEOUT must be a number of seconds, got {text!r}") from None
    if not seconds > 0:
        raise ValueError(f"BACKPROP_MPI_TIMEOUT must be a positive number of seconds, got {text!r}")
    return seconds


def bucket_size():
    """Bytes of gradients summed at once while the backward pass goes on: BACKPROP_MPI_BUCKET_KB (kibibytes,
    0 for one sum after the backward pass), 256 KiB by default."""
    text = os.environ.get("BACKPROP_MPI_BUCKET_KB", "256")
    try:
        kib = float(text)
    except ValueError:
        raise ValueError(f"BACKPROP_MPI_BUCKET_KB must be a number of kibibytes, got {text!r}") from None
    if not 0 <= kib < float("inf"):
        raise ValueError(f"BACKPROP_MPI_BUCKET_KB must be 0 or more kibibytes, got {text!r}")
    return int(kib * 1024)


def _launched_by_mpi():
    return any(os.environ.get(name) for name in _LAUNCHER_VARIABLES)


def init():
    """Join the MPI job this process was started in (a no-op outside ``mpiexec``); returns the rank."""
    global _workers
    if _workers is not None or not _launched_by_mpi():
        return rank()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("bp.distribute.init(): started by an MPI launcher but mpi4py is missing: "
                          "pip install 'backprop[mpi]'") from None
    workers = Workers(MPI.COMM_WORLD)
    if workers.size > 1:
        _workers = workers
        _abort_on_uncaught_exceptions(workers)
    return rank()


def end_job_if_failed(code, message=None):
    """A rank that failed ends the whole job (MPI_Abort with its exit code): the others would otherwise wait
    in the next collective forever. A no-op outside a multi-rank job or for exit code 0."""
    if not code or _workers is None:
        return
    sys.stderr.write(f"rank {_workers.rank} of {_workers.size}: {message or f'exit code {code}'}; aborting the job\n")
    sys.stderr.flush()
    time.sleep(0.5)  # let the launcher forward this rank's output before MPI_Abort tears the job down
    _workers.abort(code)


def _abort_on_uncaught_exceptions(workers):
    previous = sys.excepthook

    def hook(kind, value, traceback):
        sys.stderr.write(f"rank {workers.rank} of {workers.size}: {kind.__name__}: {value}; aborting the job\n")
        sys.stderr.flush()
        previous(kind, value, traceback)
        sys.stderr.flush()
        time.sleep(0.5)  # let the launcher forward this rank's output before MPI_Abort tears the job down
        workers.abort(1)
    sys.excepthook = hook


def current():
    """The Workers of this job, or None in a single process."""
    return _workers


def rank():
    return 0 if _workers is None else _workers.rank


def size():
    return 1 if _workers is None else _workers.size


def is_main():
    """True on rank 0 (and in a single process): the rank that prints and writes files."""
    return rank() == 0
