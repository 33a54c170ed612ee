"""The training loop both fits share (ials._training) and what a driver takes from the model:
fit_settings, starting_factors and fitted_factors."""

from __future__ import annotations

import logging

import ials
import numpy as np
import pytest
import scipy.sparse as sp
from ials._training import FitSettings, LocalHalfSweeps, train
from ials._validation import core_rows, transpose
from ials.callbacks import StopFitting


class Recorded:
    """Half-sweeps that only record their calls (and move the factors so a sweep is visible)."""

    def __init__(self, model: ials.AlternatingLeastSquares, losses: list[float]) -> None:
        self.model = model
        self.calls: list[str] = []
        self.losses = iter(losses)

    def solve_users(self) -> None:
        self.calls.append("users")
        users = self.model.user_factors
        assert users is not None
        users += 1  # in place, as the core solves (assigning would drop the model's caches)

    def solve_items(self) -> None:
        self.calls.append("items")

    def loss(self) -> float:
        self.calls.append("loss")
        return next(self.losses)

    def restore_basis(self) -> None:
        self.calls.append("restore")


def model_with_factors(**params: object) -> ials.AlternatingLeastSquares:
    model = ials.AlternatingLeastSquares(factors=2, random_state=0, **params)  # type: ignore[arg-type]
    model.starting_factors(4, 3)
    return model


def test_sweeps_run_users_then_items_then_the_loss() -> None:
    model = model_with_factors(iterations=3, calculate_training_loss=True)
    sweeps = Recorded(model, [3.0, 2.0, 1.0])
    reported: list[tuple[int, float | None]] = []
    train(
        model, sweeps, model.fit_settings(), False, lambda i, _s, loss: reported.append((i, loss))
    )
    assert sweeps.calls == ["users", "items", "loss"] * 3 + ["restore"]
    assert reported == [(0, 3.0), (1, 2.0), (2, 1.0)]


def test_no_loss_is_computed_unless_asked() -> None:
    model = model_with_factors(iterations=2)
    sweeps = Recorded(model, [])
    reported: list[float | None] = []
    train(model, sweeps, model.fit_settings(), False, lambda _i, _s, loss: reported.append(loss))
    assert sweeps.calls == ["users", "items"] * 2 + ["restore"]
    assert reported == [None, None]


def test_the_loss_is_logged_without_a_progress_bar(caplog: pytest.LogCaptureFixture) -> None:
    model = model_with_factors(iterations=1, calculate_training_loss=True)
    with caplog.at_level(logging.INFO, logger="ials._training"):
        train(model, Recorded(model, [0.25]), model.fit_settings(), False, None)
    assert [r.getMessage() for r in caplog.records] == ["iteration 0: loss 0.25"]


def test_stop_fitting_ends_after_that_sweep() -> None:
    model = model_with_factors(iterations=5)
    sweeps = Recorded(model, [])

    def stop_at_one(iteration: int, _seconds: float, _loss: float | None) -> None:
        if iteration == 1:
            raise StopFitting

    train(model, sweeps, model.fit_settings(), False, stop_at_one)
    assert sweeps.calls == ["users", "items"] * 2 + ["restore"]


def test_factors_are_reassigned_even_when_a_callback_fails() -> None:
    """A callback may derive cached values (here the user norms of similar_users) from factors
    that the next sweep changes in place; the loop drops them however it ends."""
    model = model_with_factors(iterations=3)
    before = model.similar_users(0, N=4)

    def fail(iteration: int, _seconds: float, _loss: float | None) -> None:
        if iteration == 1:  # the second sweep changed the factors after the cache was made
            raise RuntimeError("callback failed")
        model.similar_users(0, N=4)  # caches norms of the first sweep's factors

    with pytest.raises(RuntimeError, match="callback failed"):
        train(model, Recorded(model, []), model.fit_settings(), False, fail)
    fresh = ials.AlternatingLeastSquares(factors=2)
    fresh.user_factors, fresh.item_factors = model.user_factors.copy(), model.item_factors.copy()
    np.testing.assert_array_equal(model.similar_users(0, N=4)[1], fresh.similar_users(0, N=4)[1])
    assert not np.array_equal(model.similar_users(0, N=4)[1], before[1])


def test_local_half_sweeps_are_what_fit_runs() -> None:
    rng = np.random.default_rng(5)
    matrix = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    fitted = ials.AlternatingLeastSquares(factors=4, iterations=2, random_state=1)
    fitted.fit(matrix, show_progress=False)
    driven = ials.AlternatingLeastSquares(factors=4, iterations=2, random_state=1)
    settings = driven.fit_settings()
    x, y = driven.starting_factors(40, 30)
    sweeps = LocalHalfSweeps(core_rows(matrix), core_rows(transpose(matrix)), x, y, settings)
    train(driven, sweeps, settings, False, None)
    np.testing.assert_array_equal(driven.user_factors, fitted.user_factors)
    np.testing.assert_array_equal(driven.item_factors, fitted.item_factors)


def test_fit_settings_are_the_checked_parameters() -> None:
    model = ials.AlternatingLeastSquares(
        factors=3,
        regularization=0.5,
        alpha=2.0,
        dtype=np.float64,
        use_cg=False,
        iterations=7,
        calculate_training_loss=True,
        num_threads=2,
        cg_steps=4,
        regularization_exponent=0.25,
        unobserved_weight=0.1,
    )
    settings = model.fit_settings()
    assert isinstance(settings, FitSettings)
    objective = settings.objective
    assert (
        objective.regularization,
        objective.alpha,
        objective.regularization_exponent,
        objective.unobserved_weight,
    ) == (0.5, 2.0, 0.25, 0.1)
    assert settings.dtype == np.dtype(np.float64)
    assert (settings.use_cg, settings.cg_steps, settings.num_threads) == (False, 4, 2)
    assert (settings.iterations, settings.calculate_training_loss) == (7, True)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("cg_steps", 0, ValueError),
        ("iterations", -1, ValueError),
        ("num_threads", 1.5, TypeError),
        ("alpha", float("nan"), ValueError),
        ("dtype", np.int32, ValueError),
    ],
)
def test_fit_settings_name_a_bad_parameter(name: str, value: object, error: type) -> None:
    model = ials.AlternatingLeastSquares(factors=2)
    setattr(model, name, value)  # parameters are plain attributes, checked when used
    with pytest.raises(error, match=name):
        model.fit_settings()


def test_starting_factors_keep_factors_that_fit() -> None:
    model = ials.AlternatingLeastSquares(factors=2, dtype=np.float64)
    users = np.asfortranarray(np.arange(8, dtype=np.float32).reshape(4, 2))
    items = np.ones((3, 2), dtype=np.float64)
    model.user_factors, model.item_factors = users, items
    x, y = model.starting_factors(4, 3)
    assert y is items  # already usable: not copied
    assert x.dtype == np.float64 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, users)
    assert model.user_factors is x and model.item_factors is y


def test_starting_factors_draw_new_ones_when_shapes_differ() -> None:
    model = ials.AlternatingLeastSquares(factors=2, random_state=3)
    model.user_factors, model.item_factors = (
        np.ones((5, 2), np.float32),
        np.ones((3, 2), np.float32),
    )
    x, y = model.starting_factors(4, 3)
    rng = np.random.default_rng(3)
    want_x = rng.random((4, 2), dtype=np.float32) * np.float32(0.01)
    want_y = rng.random((3, 2), dtype=np.float32) * np.float32(0.01)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)


def test_fitted_factors_before_a_fit() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        ials.AlternatingLeastSquares(factors=2).fitted_factors()
