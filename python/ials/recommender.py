"""A model that answers in raw ids: :class:`Recommender` bundles a fitted
:class:`~ials.AlternatingLeastSquares`, the :class:`~ials.Interactions` it was trained on (the raw
user and item ids of its rows and columns, and each user's history) and the :class:`Confidence`
transform its training data went through, so that a history folded in later gets the same
weights::

    data = ials.Interactions.read("plays.csv", weight_col="plays")
    rec = ials.Recommender.fit(data, ials.AlternatingLeastSquares(factors=64),
                               confidence=ials.Confidence("log", alpha=8.0))
    rec.recommend("alice", N=10)                       # [(raw item id, score), ...]
    rec.fold_in_users(["zoe", "zoe"], ["song-1", "song-7"], [3, 1])
    rec.save("bundle.npz")                             # one checksummed file
    rec = ials.Recommender.load("bundle.npz")

The file is the model file of :meth:`AlternatingLeastSquares.save` with the interactions and the
transform added; ``AlternatingLeastSquares.load`` and ``Interactions.load`` read it too, and
``Recommender.load`` reads a plain model file (ids are then the row and column numbers, and no
history is known).

Every method is safe to call from several threads at once: fold-ins build new factor arrays and a
new matrix, then publish them together in one assignment, so a concurrent call sees the model
either before or after, never half of it.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

from . import confidence as transforms
from .als import AlternatingLeastSquares
from .interactions import Interactions, _coerce_query, _Index, _results

__all__ = ["Confidence", "Recommender"]

Results = list[tuple[Any, float]]
# A listener's history: {raw item id: strength}, or raw item ids that count 1 each.
History = Mapping[Any, float] | Sequence[Any]

_NAMES = ("raw", "linear", "log")


@dataclass(frozen=True)
class Confidence:
    """The confidence transform applied to raw interaction strengths before fitting.

    ``"raw"``: none (the model's own ``alpha`` scales the strengths); ``"linear"``:
    :func:`ials.confidence.linear` with ``alpha``; ``"log"``: :func:`ials.confidence.log` with
    ``alpha`` and ``eps``. Those two are fitted with the model's ``alpha=1``.
    """

    name: Literal["raw", "linear", "log"] = "raw"
    alpha: float = 1.0
    eps: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in _NAMES:
            raise ValueError(f"confidence must be one of {', '.join(_NAMES)}, got {self.name!r}")
        object.__setattr__(
            self, "alpha", transforms._check_scalar("alpha", self.alpha, allow_zero=True)
        )
        object.__setattr__(self, "eps", transforms._check_scalar("eps", self.eps, allow_zero=False))

    @classmethod
    def describe(cls, transform: Any) -> Confidence:
        """``transform`` as a :class:`Confidence`: None or ``"raw"`` (no transform), a
        ``Confidence``, or ``functools.partial(ials.confidence.linear | log, ...)`` binding
        ``alpha`` (and ``eps``). Anything else cannot be saved and is refused."""
        if transform is None:
            return cls()
        if isinstance(transform, Confidence):
            return transform
        if isinstance(transform, str):
            if transform != "raw":
                raise ValueError(
                    f"confidence {transform!r} needs its alpha: pass ials.Confidence({transform!r}"
                    ", alpha=...)"
                )
            return cls()
        if isinstance(transform, functools.partial) and not transform.args:
            function = transform.func
            keywords = dict(transform.keywords)
            if function is transforms.linear and set(keywords) == {"alpha"}:
                return cls("linear", keywords["alpha"])
            if (
                function is transforms.log
                and "alpha" in keywords
                and set(keywords)
                <= {
                    "alpha",
                    "eps",
                }
            ):
                return cls("log", keywords["alpha"], keywords.get("eps", 1.0))
        raise TypeError(
            f"cannot describe the confidence transform {transform!r}, so it could not be saved: "
            "pass ials.Confidence('raw' | 'linear' | 'log', alpha=..., eps=...)"
        )

    def apply(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """The confidences the model is fitted on, from raw strengths."""
        if self.name == "linear":
            return transforms.linear(user_items, self.alpha)
        if self.name == "log":
            return transforms.log(user_items, self.alpha, self.eps)
        return user_items

    def check_strengths(self, name: str, values: np.ndarray) -> None:
        """Refuses negative strengths under a transform: only a raw model reads them (as
        explicit dislikes), ``linear`` and ``log`` are defined for counts >= 0."""
        if self.name != "raw" and values.size and values.min() < 0:
            raise ValueError(
                f"{name} must be >= 0 with the {self.name} confidence transform, got "
                f"{values.min():g}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha, "eps": self.eps}


class _Parts(NamedTuple):
    """What one call reads: replaced as a whole by a fold-in, never changed in place."""

    model: AlternatingLeastSquares
    data: Interactions


def _check_history(history: Any) -> tuple[list[Any], list[float]]:
    if isinstance(history, Mapping):
        items, weights = list(history.keys()), list(history.values())
    elif isinstance(history, Sequence) and not isinstance(history, str | bytes):
        items, weights = list(history), [1.0] * len(history)
    else:
        raise TypeError(
            "history must be a mapping {item id: strength} or a list of item ids, got "
            f"{type(history).__name__}"
        )
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, int | float | np.number):
            raise TypeError(f"history strengths must be numbers, got {weight!r}")
        if not math.isfinite(float(weight)):
            raise ValueError(f"history strengths must be finite, got {weight!r}")
    return items, [float(weight) for weight in weights]


def _positions(name: str, query: np.ndarray, index: _Index, grow: bool) -> tuple[np.ndarray, Any]:
    """The positions of ``query`` (unique raw ids) in ``index``, and the ids after appending
    those it does not hold when ``grow`` (an unknown id is an error otherwise)."""
    if not grow:
        return index.positions(query), index.ids
    typed, ok = _coerce_query(query, index.ids)
    if not ok.all():
        raise TypeError(f"{name} of this model are integers, got {query[~ok][0].item()!r}")
    known = np.isin(typed, index.ids)
    positions = np.empty(len(typed), dtype=np.int64)
    positions[known] = index.positions(typed[known])
    positions[~known] = np.arange(len(index.ids), len(index.ids) + int((~known).sum()))
    return positions, np.concatenate([index.ids, typed[~known]])


class Recommender:
    """A fitted model with the raw ids of its users and items and its confidence transform.

    Parameters
    ----------
    model : AlternatingLeastSquares
        Fitted.
    interactions : Interactions, optional
        The raw strengths the model was fitted on (before ``confidence``), with their ids: one
        row per user factor and one column per item factor. Each user's row is the history that
        ``filter_already_liked_items`` and :meth:`explain` read. Default: ids ``0..n-1`` and no
        history.
    confidence : Confidence, ``functools.partial`` of a transform of :mod:`ials.confidence`, or
        None (``"raw"``). See :meth:`Confidence.describe`.
    """

    def __init__(
        self,
        model: AlternatingLeastSquares,
        interactions: Interactions | None = None,
        confidence: Any = None,
    ) -> None:
        if not isinstance(model, AlternatingLeastSquares):
            raise TypeError(f"model must be an AlternatingLeastSquares, got {type(model).__name__}")
        users, items = model.fitted_factors()
        if interactions is None:
            interactions = Interactions(sp.csr_matrix((users.shape[0], items.shape[0])))
        elif not isinstance(interactions, Interactions):
            raise TypeError(
                f"interactions must be an ials.Interactions, got {type(interactions).__name__}"
            )
        interactions._check_model(model)
        self.confidence = Confidence.describe(confidence)
        self._parts = _Parts(model, interactions)
        self._writing = threading.Lock()

    # --- construction and files ---------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        interactions: Interactions,
        model: AlternatingLeastSquares | None = None,
        confidence: Any = None,
        show_progress: bool = False,
    ) -> Recommender:
        """Fits ``model`` (default settings when None) on ``confidence`` applied to
        ``interactions.matrix``, and bundles the three."""
        model = AlternatingLeastSquares() if model is None else model
        described = Confidence.describe(confidence)
        model.fit(described.apply(interactions.matrix), show_progress=show_progress)
        return cls(model, interactions, described)

    def save(self, fileobj_or_path: Any) -> None:
        """One checksummed ``.npz`` (``.npz`` appended to a path without it), written
        atomically: the model's settings and factors, the interactions with their raw ids (ints
        as int64, strings as unicode: nothing is pickled) and the confidence transform."""
        from ._persistence import save_model

        model, data = self._parts
        c = self.confidence
        save_model(model, fileobj_or_path, data, (c.name, c.alpha, c.eps))

    @classmethod
    def load(cls, fileobj_or_path: Any) -> Recommender:
        """The bundle in a file written by :meth:`save`, or a fitted model file written by
        ``AlternatingLeastSquares.save`` (with or without interactions) or by implicit."""
        from ._persistence import load_bundle

        model, parts, saved = load_bundle(AlternatingLeastSquares, fileobj_or_path)
        if model.user_factors is None:
            raise ValueError("the model file holds a model that was never fitted")
        data = None if parts is None else Interactions(*parts)
        try:
            transform = None if saved is None else Confidence(*saved)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"the model file holds an invalid confidence transform: {err}"
            ) from None
        return cls(model, data, transform)

    # --- what it holds -----------------------------------------------------------------------

    @property
    def model(self) -> AlternatingLeastSquares:
        return self._parts.model

    @property
    def interactions(self) -> Interactions:
        return self._parts.data

    @property
    def user_ids(self) -> np.ndarray:
        return self._parts.data.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self._parts.data.item_ids

    @property
    def n_users(self) -> int:
        return self._parts.data.n_users

    @property
    def n_items(self) -> int:
        return self._parts.data.n_items

    def info(self) -> dict[str, Any]:
        """Sizes, settings and the confidence transform, as JSON-ready values."""
        model, data = self._parts
        from ._persistence import _PARAMETERS

        settings = {name: getattr(model, name) for name in _PARAMETERS}
        settings["dtype"] = np.dtype(settings["dtype"]).name
        if not isinstance(settings["random_state"], int):
            settings["random_state"] = None
        return {
            "users": data.n_users,
            "items": data.n_items,
            "interactions": data.nnz,
            "user_id_type": "int" if data.user_ids.dtype.kind == "i" else "str",
            "item_id_type": "int" if data.item_ids.dtype.kind == "i" else "str",
            "settings": settings,
            "confidence": self.confidence.as_dict(),
        }

    # --- answers in raw ids ------------------------------------------------------------------

    def _ranked(
        self,
        parts: _Parts,
        rows: np.ndarray,
        user_items: Any,
        recalculate: bool,
        options: tuple[int, bool, Any, Any],
    ) -> list[Results]:
        """``model.recommend`` for these rows, ``options`` being (N, filter_already_liked_items,
        filter_items, items) with raw item ids; one list of results per row."""
        model, data = parts
        n, filter_liked, filter_items, items = options
        ids, scores = model.recommend(
            rows,
            user_items if filter_liked or recalculate else None,
            N=n,
            filter_already_liked_items=filter_liked,
            filter_items=None if filter_items is None else data.item_indices(filter_items),
            recalculate_user=recalculate,
            items=None if items is None else data.item_indices(items),
        )
        # A padded row's -1 ids index the last item, but their -inf scores leave them out.
        return [_results(data.item_ids[i], s) for i, s in zip(ids, scores, strict=True)]

    def recommend(
        self,
        user_id: Any,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        items: Any = None,
    ) -> Results:
        """The best ``N`` items for a known user: ``[(raw item id, score), ...]``, best first.
        ``filter_items`` (never returned) and ``items`` (only these ranked) are raw item ids."""
        (results,) = self.recommend_batch(
            [user_id], N, filter_already_liked_items, filter_items, items
        )
        return results

    def recommend_batch(
        self,
        user_ids: Any,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        items: Any = None,
    ) -> list[Results]:
        """:meth:`recommend` for each of a 1-D list of raw user ids, in one call of the core."""
        parts = self._parts
        rows = parts.data.user_indices(user_ids)
        options = (N, filter_already_liked_items, filter_items, items)
        return self._ranked(parts, rows, parts.data.matrix[rows], False, options)

    def _history_row(self, data: Interactions, history: Any) -> sp.csr_matrix:
        """A history as one row of raw strengths (repeated items summed)."""
        items, weights = _check_history(history)
        self.confidence.check_strengths("history strengths", np.asarray(weights))
        columns = data.item_indices(items) if items else np.zeros(0, dtype=np.int64)
        row = sp.csr_matrix(
            (np.asarray(weights, dtype=np.float64), (np.zeros(len(columns), int), columns)),
            shape=(1, data.n_items),
        )
        row.sum_duplicates()
        return row.astype(np.float32)

    def recommend_history(
        self,
        history: History,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        items: Any = None,
    ) -> Results:
        """The best ``N`` items for a listener known only by ``history`` ({raw item id:
        strength} or a list of raw item ids), solved exactly as a fold-in would, with the
        confidence transform of training. Nothing is stored."""
        parts = self._parts
        row = self.confidence.apply(self._history_row(parts.data, history))
        options = (N, filter_already_liked_items, filter_items, items)
        (results,) = self._ranked(parts, np.zeros(1, dtype=np.int64), row, True, options)
        return results

    def similar_items(
        self, item_id: Any, N: int = 10, filter_items: Any = None, items: Any = None
    ) -> Results:
        """The ``N`` items closest to ``item_id`` by cosine, the item itself first unless
        filtered: ``[(raw item id, cosine), ...]``."""
        model, data = self._parts
        return data.similar_items(model, item_id, N, filter_items, items)

    def similar_users(self, user_id: Any, N: int = 10) -> Results:
        """The ``N`` users closest to ``user_id`` by cosine, the user first:
        ``[(raw user id, cosine), ...]``."""
        model, data = self._parts
        return data.similar_users(model, user_id, N)

    def explain(self, user_id: Any, item_id: Any, N: int = 10) -> tuple[float, Results]:
        """Why ``item_id`` scores as it does for a known user (Hu, Koren & Volinsky, section 5):
        the score of the user's exact solve and the ``N`` largest contributions of the items in
        their history, ``[(raw item id, contribution), ...]``; all contributions sum to the
        score."""
        model, data = self._parts
        row = data.user_index(user_id)
        weights = self.confidence.apply(data.matrix[row])
        total, top, _ = model.explain(row, weights, data.item_index(item_id), N=N)
        if not top:
            return total, []
        ids = np.array([i for i, _ in top])
        return total, list(zip(data.item_ids[ids].tolist(), [c for _, c in top], strict=True))

    def score(self, user_ids: Any, item_ids: Any) -> list[float]:
        """The predicted preference of each (user, item) pair of two 1-D lists of raw ids."""
        model, data = self._parts
        rows, columns = data.user_indices(user_ids), data.item_indices(item_ids)
        if len(rows) != len(columns):
            raise ValueError(
                f"user_ids and item_ids must have the same length, got {len(rows)} and "
                f"{len(columns)}"
            )
        return np.asarray(model.score(rows, columns), dtype=np.float64).tolist()

    # --- fold-in -----------------------------------------------------------------------------

    def fold_in_users(self, users: Any, items: Any, weights: Any = None) -> None:
        """Adds interactions (``users[j]`` with ``items[j]``, of strength ``weights[j]``, 1 when
        omitted; raw ids, raw strengths) to the users' histories and solves each listed user
        exactly against the item factors, with the confidence transform of training. A user id
        not seen before gets a new row, its id appended to ``user_ids``; items must be known."""
        self._fold_in(users, items, weights, users_side=True)

    def fold_in_items(self, items: Any, users: Any, weights: Any = None) -> None:
        """The item-side :meth:`fold_in_users`: adds ``items[j]`` with ``users[j]`` and solves
        each listed item against the user factors; a new item id gets a new column and factor
        row. Users must be known."""
        self._fold_in(users, items, weights, users_side=False)

    def _fold_in(self, users: Any, items: Any, weights: Any, users_side: bool) -> None:
        added = Interactions.from_arrays(users, items, weights)
        self.confidence.check_strengths("weights", added.matrix.data)
        with self._writing:
            model, data = self._parts
            rows, grown_users = _positions("user ids", added.user_ids, data._users, users_side)
            columns, grown_items = _positions(
                "item ids", added.item_ids, data._items, not users_side
            )
            shape = (len(grown_users), len(grown_items))
            old = data.matrix
            indptr = np.concatenate(
                [old.indptr, np.full(shape[0] - old.shape[0], old.indptr[-1], old.indptr.dtype)]
            )
            base = sp.csr_matrix((old.data, old.indices, indptr), shape=shape)
            coo = added.matrix.tocoo()
            extra = sp.csr_matrix(
                (coo.data, (rows[coo.row], columns[coo.col])), shape=shape, dtype=np.float32
            )
            grown = Interactions(base + extra, grown_users, grown_items)
            successor = copy.copy(model)  # the running calls keep the old one; caches are rebuilt
            if users_side:
                successor.user_factors = np.array(model.user_factors)
                solved = np.unique(rows)
                successor.partial_fit_users(solved, self.confidence.apply(grown.matrix[solved]))
            else:
                successor.item_factors = np.array(model.item_factors)
                solved = np.unique(columns)
                confidences = self.confidence.apply(grown.matrix[:, solved].tocsr())
                successor.partial_fit_items(solved, confidences.T.tocsr())
            self._parts = _Parts(successor, grown)
