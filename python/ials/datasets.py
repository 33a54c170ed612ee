"""Synthetic implicit-feedback data with a planted taste structure.

:func:`synthetic` draws a users x items matrix of play counts that looks like
listening data (a few very popular items, a long tail, heavy users and light
users) and whose structure is known, so that tests and benchmarks can check that
a model finds it:

* every item belongs to one of ``n_groups`` taste groups (groups have equal
  sizes, up to one item, and are assigned to item ids at random);
* every user has one main taste group; group ``g`` is chosen with probability
  proportional to ``1 / (g + 1) ** 0.5`` (group 0 is the most popular taste);
* within its group, the item of popularity rank ``j`` (ranks assigned at random)
  has weight ``1 / (j + 1)``; across the catalogue, an item's popularity is its
  within-group share times its group's weight (Zipf-like within and across
  groups);
* user ``u`` is given a target number ``t_u`` of distinct items, lognormal around
  ``interactions_per_user`` (mean exactly ``interactions_per_user`` before the
  cap at ``n_items``; at least 1); each draw comes from the user's group with
  probability 0.8, else from the global popularity (so about 70-80% of a user's
  distinct items are in their group: in-group draws repeat more often); repeated
  draws of an item add up its
  play count, and users are topped up with further draws until they hold
  ``t_u`` distinct items (a few rounds at most: a user whose target exhausts
  the items reachable in practice may end with slightly fewer);
* each draw is worth ``1 + floor(L)`` plays, with ``L`` lognormal (heavy tail).

So ``nnz`` is close to ``n_users * interactions_per_user`` (slightly less for
users whose targets approach ``n_items``); pass a float ``interactions_per_user``
to aim at a given total.  Everything is vectorised (the work is done in blocks of
draws, never per user), memory is linear in ``nnz``, and no dense
``n_users x n_items`` array is ever formed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ._validation import check_int, check_memory, check_random_state

__all__ = ["SyntheticGroups", "synthetic"]

IN_GROUP_FRACTION = 0.8
"""Probability that a draw comes from the user's own group."""
ITEM_ZIPF_EXPONENT = 1.0
"""Exponent of the within-group popularity law ``1 / (rank + 1) ** s``."""
GROUP_ZIPF_EXPONENT = 0.5
"""Exponent of the group popularity law ``1 / (g + 1) ** s``."""
TARGET_SIGMA = 0.8
"""Log-scale spread of the per-user targets around ``interactions_per_user``."""

_PLAYS_MU = 1.0
_PLAYS_SIGMA = 1.2
_BLOCK_DRAWS = 1 << 22
_MAX_TOP_UP_ROUNDS = 8


@dataclass(frozen=True, eq=False)
class SyntheticGroups:
    """The planted structure of a :func:`synthetic` data set.

    Attributes
    ----------
    user_group : ndarray of int64, shape (n_users,)
        Main taste group of each user, in ``[0, n_groups)``.
    item_group : ndarray of int64, shape (n_items,)
        Group of each item, in ``[0, n_groups)``.

    Both arrays are read-only.
    """

    user_group: NDArray[np.int64]
    item_group: NDArray[np.int64]


def synthetic(
    n_users: int = 2000,
    n_items: int = 1000,
    n_groups: int = 8,
    interactions_per_user: float = 30,
    *,
    random_state: int | np.random.Generator | None = None,
) -> tuple[sp.csr_matrix, SyntheticGroups]:
    """Draw a listening-like users x items play-count matrix with planted groups.

    See the module docstring for the generative model.

    Parameters
    ----------
    n_users, n_items : int
        Shape of the matrix, both ``>= 1``; ``n_items < 2**31``.
    n_groups : int
        Number of taste groups, ``1 <= n_groups <= n_items``.
    interactions_per_user : float
        Mean number of distinct items per user, ``1 <= interactions_per_user <=
        n_items``; need not be an integer, so ``nnz / n_users`` gives a matrix of
        about ``nnz`` stored entries.
    random_state : None, int or numpy.random.Generator
        Seed or generator.  The same int gives the same data; a Generator is
        advanced.

    Returns
    -------
    (R, groups)
        ``R``: ``scipy.sparse.csr_matrix`` of float32 play counts (integers
        ``>= 1``), canonical (sorted indices, no duplicates, no explicit zeros),
        int32 indices and indptr (int64 when nnz does not fit in int32).
        ``groups``: the :class:`SyntheticGroups` used to draw it.
    """
    n_users = check_int("n_users", n_users, 1)
    n_items = check_int("n_items", n_items, 1)
    n_groups = check_int("n_groups", n_groups, 1)
    if n_items >= 2**31:
        raise ValueError(f"n_items must be < 2**31, got {n_items}")
    if n_groups > n_items:
        raise ValueError(f"n_groups must be <= n_items ({n_items}), got {n_groups}")
    if n_users * n_items >= 2**62:
        raise ValueError(
            f"n_users * n_items must be < 2**62, got n_users={n_users}, n_items={n_items}"
        )
    ipu = _check_ipu(interactions_per_user, n_items)
    check_memory(
        f"n_users={n_users}, n_items={n_items}, interactions_per_user={interactions_per_user}",
        # 8 bytes per stored entry, 5 int64 arrays per user, 8 float64/int64 arrays per item
        int(n_users * (8 * ipu + 40) + n_items * 64),
        "the matrix and its per-user and per-item arrays",
    )
    rng = check_random_state(random_state)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"random_state must be None, an int or a numpy.random.Generator, got {random_state!r}"
        )

    gen = _Generator(rng, n_users, n_items, n_groups)

    # Per-user targets: 1 + stochastic rounding of a lognormal of mean ipu - 1,
    # so that E[t_u] = ipu exactly (before the cap at n_items).
    target = np.ones(n_users, dtype=np.int64)
    if ipu > 1.0:
        mu = math.log(ipu - 1.0) - TARGET_SIGMA**2 / 2.0
        extra = rng.lognormal(mu, TARGET_SIGMA, n_users) + rng.random(n_users)
        target += np.floor(extra).astype(np.int64)
    np.minimum(target, n_items, out=target)

    # Whole users per block, about _BLOCK_DRAWS draws each; each block is drawn,
    # topped up and finished on its own, so no step ever sorts or copies all nnz.
    ends = np.cumsum(target)
    indices_parts: list[NDArray[np.int32]] = []
    data_parts: list[NDArray[np.float32]] = []
    row_nnz = np.zeros(n_users, dtype=np.int64)
    lo = 0
    while lo < n_users:
        done = int(ends[lo - 1]) if lo else 0
        hi = int(np.searchsorted(ends, done + _BLOCK_DRAWS, side="right"))
        hi = max(hi, lo + 1)
        keys, mult = gen.draw_users(lo, target[lo:hi])
        rows = keys // n_items
        indices_parts.append((keys - rows * n_items).astype(np.int32))
        data_parts.append(_play_counts(rng, mult))
        row_nnz[lo:hi] = np.bincount(rows - lo, minlength=hi - lo)
        lo = hi

    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    indices = np.concatenate(indices_parts)
    data = np.concatenate(data_parts)
    del indices_parts, data_parts
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    else:
        indices = indices.astype(np.int64)
    R = sp.csr_matrix((data, indices, indptr), shape=(n_users, n_items))

    user_group = gen.user_group
    item_group = gen.item_group
    user_group.setflags(write=False)
    item_group.setflags(write=False)
    return R, SyntheticGroups(user_group=user_group, item_group=item_group)


class _Generator:
    """Item-drawing machinery shared by the first draw and the top-up rounds."""

    def __init__(self, rng: np.random.Generator, n_users: int, n_items: int, n_groups: int) -> None:
        self.rng = rng
        self.n_items = n_items

        item_group = rng.permutation(np.arange(n_items, dtype=np.int64) % n_groups)
        # Items sorted by group, in random order (= popularity rank) within each.
        order = rng.permutation(n_items)
        by_group = order[np.argsort(item_group[order], kind="stable")]
        sizes = np.bincount(item_group, minlength=n_groups)
        stop = np.cumsum(sizes)
        start = stop - sizes
        rank = np.arange(n_items) - np.repeat(start, sizes)
        within = 1.0 / (rank + 1.0) ** ITEM_ZIPF_EXPONENT  # in by_group order
        group_mass = np.add.reduceat(within, start)
        within_share = within / np.repeat(group_mass, sizes)

        group_weight = 1.0 / np.arange(1, n_groups + 1) ** GROUP_ZIPF_EXPONENT
        group_weight /= group_weight.sum()

        # Group g occupies (g, g + 1] of this concatenated cdf.
        cum = np.cumsum(within_share)
        cum_before = np.concatenate(([0.0], cum[stop[:-1] - 1]))
        group_cdf = cum - np.repeat(cum_before, sizes)
        group_cdf += np.repeat(np.arange(n_groups, dtype=np.float64), sizes)
        group_cdf[stop - 1] = np.arange(1, n_groups + 1, dtype=np.float64)
        self.group_sampler = _Sampler(group_cdf)
        self.group_stop = stop
        self.by_group = by_group

        popularity = np.empty(n_items)
        popularity[by_group] = within_share * np.repeat(group_weight, sizes)
        global_cdf = np.cumsum(popularity)
        global_cdf[-1] = 1.0
        self.global_sampler = _Sampler(global_cdf)

        self.item_group = item_group
        self.user_group = rng.choice(n_groups, size=n_users, p=group_weight).astype(np.int64)

    def draw_users(
        self, first_user: int, target: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Draw users first_user, first_user + 1, ... until they reach their targets.

        Returns the sorted keys ``user * n_items + item`` of the distinct
        (user, item) pairs drawn and how many times each was drawn.
        """
        n = target.size
        users = np.arange(first_user, first_user + n, dtype=np.int64)
        keys, mult = self._draw_unique(users, target)
        deficit = target - np.bincount(keys // self.n_items - first_user, minlength=n)
        for _ in range(_MAX_TOP_UP_ROUNDS):
            short = np.flatnonzero(deficit > 0)
            if short.size == 0:
                break
            new_keys, new_mult = self._draw_unique(users[short], deficit[short])
            pos = np.searchsorted(keys, new_keys)
            hit = pos < keys.size
            hit[hit] = keys[pos[hit]] == new_keys[hit]
            mult[pos[hit]] += new_mult[hit]
            fresh = ~hit
            keys = np.insert(keys, pos[fresh], new_keys[fresh])
            mult = np.insert(mult, pos[fresh], new_mult[fresh])
            deficit -= np.bincount(new_keys[fresh] // self.n_items - first_user, minlength=n)
        return keys, mult

    def _draw_unique(
        self, users: NDArray[np.int64], counts: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Draw counts[j] items for users[j]; sorted unique keys and multiplicities."""
        keys = self._draw_block(users, counts)
        keys.sort()
        if keys.size == 0:
            return keys, np.zeros(0, dtype=np.int64)
        first = np.empty(keys.size, dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        mult = np.diff(starts, append=keys.size)
        return keys[starts], mult

    def _draw_block(self, users: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.int64]:
        rng = self.rng
        owner = np.repeat(users, counts)
        n = owner.size
        items = np.empty(n, dtype=np.int64)
        in_group = rng.random(n) < IN_GROUP_FRACTION

        g = self.user_group[owner[in_group]]
        pos = self.group_sampler(g + rng.random(g.size))
        np.minimum(pos, self.group_stop[g] - 1, out=pos)
        items[in_group] = self.by_group[pos]

        out_group = ~in_group
        pos = self.global_sampler(rng.random(int(np.count_nonzero(out_group))))
        np.minimum(pos, self.n_items - 1, out=pos)
        items[out_group] = pos

        owner *= self.n_items
        owner += items
        return owner


class _Sampler:
    """Inverse-cdf lookup, ``searchsorted(cdf, x, side="right")``, made fast.

    A guide table (Chen and Asau 1974) maps a bucket of x to the first index
    whose cdf exceeds the bucket's start; a few vectorised steps finish the
    search.  Random queries into a plain binary search are several times slower.
    """

    def __init__(self, cdf: NDArray[np.float64]) -> None:
        n = cdf.size
        self.cdf = np.append(cdf, np.inf)  # sentinel: the walk always stops
        self.scale = 4 * n / float(cdf[-1])
        # Edges nudged down so that rounding in x * scale can never skip the answer.
        edges = np.arange(4 * n, dtype=np.float64) / self.scale * (1.0 - 1e-12)
        self.guide = np.searchsorted(cdf, edges, side="right")

    def __call__(self, x: NDArray[np.float64]) -> NDArray[np.intp]:
        bucket = (x * self.scale).astype(np.intp)
        np.clip(bucket, 0, self.guide.size - 1, out=bucket)
        pos = self.guide[bucket]
        cdf = self.cdf
        walk = np.flatnonzero(cdf[pos] <= x)
        while walk.size:
            pos[walk] += 1
            walk = walk[cdf[pos[walk]] <= x[walk]]
        return pos


def _play_counts(rng: np.random.Generator, mult: NDArray[np.int64]) -> NDArray[np.float32]:
    """Sum of mult[j] independent heavy-tailed play counts, for each j."""
    data = _plays(rng, mult.size)
    repeated = np.flatnonzero(mult > 1)
    if repeated.size:
        extra_n = mult[repeated] - 1
        extra = _plays(rng, int(extra_n.sum()))
        starts = np.concatenate(([0], np.cumsum(extra_n)[:-1]))
        data[repeated] += np.add.reduceat(extra, starts)
    return data


def _plays(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    """n draws of 1 + floor(L), L lognormal: integers >= 1, exact in float32."""
    x = rng.standard_normal(n, dtype=np.float32)
    x *= np.float32(_PLAYS_SIGMA)
    x += np.float32(_PLAYS_MU)
    np.exp(x, out=x)
    np.floor(x, out=x)
    x += np.float32(1.0)
    return x


def _check_ipu(value: object, n_items: int) -> float:
    name = "interactions_per_user"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 1.0 <= v <= n_items):
        raise ValueError(f"{name} must be finite, >= 1 and <= n_items ({n_items}), got {value!r}")
    return v
