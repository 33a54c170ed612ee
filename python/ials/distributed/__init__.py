"""Training and batch scoring on a Dask cluster (the ``dask`` extra:
``pip install 'dask[dataframe,distributed]'``).

::

    from distributed import Client
    import ials
    import ials.distributed

    client = Client("tcp://scheduler:8786")
    model = ials.AlternatingLeastSquares(factors=128, iterations=15, random_state=0)
    ials.distributed.fit(client, user_items, model)  # scipy matrix or Dask DataFrame
    ials.distributed.write_recommendations(client, user_items, model, "/shared/recs", N=50)

The interactions are split into contiguous blocks of users and of items
(:class:`DistributedInteractions`), balanced by number of interactions, and stay on the workers
for the whole fit: only factors move. Each half-sweep broadcasts the fixed side's factors and
their Gram matrix to the workers, each worker solves its blocks with :func:`ials.solve_rows`, and
the client gathers the new blocks and sums their Gram pieces in block order.

**Same answer as one machine.** Given the same starting factors (a fresh model draws them from
``random_state`` exactly as :meth:`AlternatingLeastSquares.fit` does), the factors are bitwise
identical to a single-machine fit for any number of workers and blocks. Every row is solved
independently by the same code; the one reduction, the Gram matrix of the side just solved, is a
float64 sum of partial sums over fixed blocks of :data:`GRAM_BLOCK_ROWS` rows added in order.
Block boundaries are therefore multiples of :data:`GRAM_BLOCK_ROWS`, each worker returns the
core's partial Gram matrix of every such chunk of its block, and the client adds them in chunk
order with the core's own summation: the same additions in the same order. This needs
every worker and the client to run the same ials build with the same kernels
(:func:`ials.simd_level`); :func:`fit` logs a warning when they differ.

**Faults.** A worker that dies mid-fit costs a retry of the blocks it held, not the fit: the
interaction blocks are recreated from their source and the factors from the client's copy, and
the result is the same. What is assumed:

- Blocks built from a scipy matrix are scattered from the client, which keeps the matrix for the
  life of the :class:`DistributedInteractions`; a block lost with its worker is scattered again.
- Blocks built from a Dask DataFrame are tasks derived from its partitions, so the scheduler
  recomputes a lost block from the DataFrame's own graph (read it from files, e.g. with
  ``dask.dataframe.read_parquet``, or ``persist`` it; a DataFrame made from data scattered by
  hand cannot be recomputed once that data is lost).
- The client keeps every factor (it gathers each new block) and broadcasts the fixed side and
  its Gram matrix each half-sweep; a block's own rows warm-start its next solve from the worker
  that solved them, without being sent again. A lost broadcast, or rows lost with their worker,
  are scattered again from the client's copy, and only the blocks whose tasks did not finish
  are solved again. A solve depends only on the current broadcast, its interaction block and
  its block's previous rows, whose own inputs are released as soon as it has finished, so no
  lineage builds up across iterations (Dask cannot recompute old iterations; ials never needs
  it to).
- A task that itself kills its worker repeatedly fails with Dask's ``KilledWorker`` (the
  scheduler's ``distributed.scheduler.allowed-failures``), and an exception raised by a task is
  raised by :func:`fit`: only lost work is retried, at most ``max_retries`` times per step.

Workers need ials (the same version as the client) and numpy/scipy; writing recommendations also
needs pyarrow. Start them with one Dask thread each (``dask worker --nthreads 1``): each block is
solved with ``num_threads`` Rayon threads (0 = every core of the worker).

The modules: ``blocks`` (the interactions in row blocks on the cluster), ``frames`` (those
blocks from a Dask DataFrame), ``retries`` (values kept alive and lost work resubmitted),
``tasks`` (what the workers run on one block), ``driver`` (:func:`fit`) and ``recommendations``
(:func:`write_recommendations`).
"""

from .blocks import GRAM_BLOCK_ROWS, DistributedInteractions, block_bounds
from .driver import fit
from .recommendations import write_recommendations

__all__ = [
    "GRAM_BLOCK_ROWS",
    "DistributedInteractions",
    "block_bounds",
    "fit",
    "write_recommendations",
]
