"""The portable kernels and the AVX2+FMA and AVX-512 kernels (chosen at run time) agree.

The same computation runs in a child process forced onto the portable path (`IALS_SIMD=portable`)
and here on the best path this CPU offers; results must agree to rounding (fused and unfused
multiply-adds round differently), so a bug in either path shows up on any machine with AVX2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ials
import numpy as np
import pytest

WORK = """
import sys
import numpy as np
import scipy.sparse as sp
import ials

data = np.load(sys.argv[1])
R = sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"]))
out = {"level": np.array(ials.simd_level())}
for dtype in ("float32", "float64"):
    for use_cg in (True, False):
        model = ials.AlternatingLeastSquares(
            factors=24, iterations=3, regularization=0.1, dtype=dtype, use_cg=use_cg,
            num_threads=1, random_state=7,
        )
        model.fit(R, show_progress=False)
        tag = f"{dtype}_{use_cg}"
        out["users_" + tag] = model.user_factors
        out["items_" + tag] = model.item_factors
        ids, scores = model.recommend_all(R, N=10)
        out["ids_" + tag], out["scores_" + tag] = ids, scores
        out["gram_" + tag] = ials.gram(model.item_factors)
np.savez(sys.argv[2], **out)
"""


def run(tmp: Path, level: str | None) -> dict[str, np.ndarray]:
    R, _ = ials.datasets.synthetic(300, 200, random_state=3)
    source = tmp / "data.npz"
    np.savez(source, data=R.data, indices=R.indices, indptr=R.indptr, shape=np.array(R.shape))
    result = tmp / f"result_{level}.npz"
    env = {**os.environ}
    env.pop("IALS_SIMD", None)
    if level is not None:
        env["IALS_SIMD"] = level
    subprocess.run(
        [sys.executable, "-c", WORK, str(source), str(result)], env=env, check=True, timeout=300
    )
    with np.load(result) as f:
        return {name: f[name] for name in f.files}


def test_portable_and_native_paths_agree(tmp_path: Path) -> None:
    portable = run(tmp_path, "portable")
    native = run(tmp_path, None)
    assert str(portable["level"]) == "portable"
    assert str(native["level"]) == ials.simd_level()
    R, _ = ials.datasets.synthetic(300, 200, random_state=3)
    # float32 CG from random factors amplifies rounding differences sweep by sweep (as it does
    # between float32 and float64): there the two paths must reach the same objective; the exact
    # solver and float64 must agree factor by factor.
    for dtype, use_cg, rtol in (
        ("float64", True, 1e-8),
        ("float64", False, 1e-8),
        ("float32", False, 1e-3),
        ("float32", True, None),
    ):
        tag = f"{dtype}_{use_cg}"
        if rtol is None:
            losses = [
                ials.calculate_loss(R, f["users_" + tag], f["items_" + tag], 0.1)
                for f in (portable, native)
            ]
            # On this problem float32 CG ends about 1.6% away from float64's objective (rounding
            # amplified over the sweeps); the two float32 paths must agree far more closely.
            assert abs(losses[0] - losses[1]) <= 1e-3 * losses[1], (tag, losses)
            continue
        for name in ("users_", "items_", "gram_"):
            a, b = portable[name + tag], native[name + tag]
            assert np.abs(a - b).max() <= rtol * np.abs(b).max(), name + tag
        # Rankings agree wherever the scores of neighbouring slots are not (nearly) tied.
        scores = native["scores_" + tag]
        gaps = np.abs(np.diff(scores, axis=1)) > 1e-3 * np.abs(scores).max()
        untied = np.ones_like(scores, dtype=bool)
        untied[:, 1:] &= gaps
        untied[:, :-1] &= gaps
        same = portable["ids_" + tag] == native["ids_" + tag]
        assert same[untied].all(), tag


def test_the_environment_switch_is_honoured_and_nothing_else_changes() -> None:
    env = {**os.environ, "IALS_SIMD": "portable"}
    out = subprocess.run(
        [sys.executable, "-c", "import ials; print(ials.simd_level())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "portable"
    assert ials.simd_level() in {"portable", "avx2+fma", "avx512"}


def test_avx512_and_avx2_paths_give_the_same_bits(tmp_path: Path) -> None:
    """The AVX-512 and AVX2 bodies of each kernel come from one source and run each output's
    FMAs in the same order (the kernels without an AVX-512 body use the AVX2 one), so training
    and ranking give identical bits on both levels."""
    if ials.simd_level() != "avx512":
        pytest.skip(f"this CPU runs {ials.simd_level()}: no AVX-512 path to compare")
    avx2 = run(tmp_path, "avx2")
    native = run(tmp_path, None)
    assert str(avx2["level"]) == "avx2+fma"
    assert str(native["level"]) == "avx512"
    for name in avx2:
        if name != "level":
            np.testing.assert_array_equal(avx2[name], native[name], err_msg=name)
