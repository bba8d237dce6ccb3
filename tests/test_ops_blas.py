"""Linear's product with the bias inside it (ops/_blas.py): the same values as NumPy's product
plus the bias, taken only where it applies, and the plain path everywhere else."""
import numpy as np
import pytest
import torch

import foveanet as fv
import foveanet.nn.functional as F
from foveanet.backend.cpu import blas
from foveanet.ops import _blas
from helpers import count_calls, without_compiled

HAVE_PATH = _blas.gemm(np.float32) is not None and _blas.warm().endswith("compiled")
needs_path = pytest.mark.skipif(not HAVE_PATH, reason="numba or NumPy's bundled OpenBLAS missing")


@needs_path
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("xs,o", [((1, 1), 1), ((7, 5), 3), ((2, 3, 4), 6), ((128, 784), 512)])
def test_addmm_is_the_product_plus_the_bias(dtype, tol, xs, o, monkeypatch):
    monkeypatch.setattr(_blas, "MIN_BYTES", 0)  # small outputs too (they go to NumPy otherwise)
    rng = np.random.default_rng(len(xs) + o)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((o, xs[-1])).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y = _blas.addmm(x, w, b)
    assert y is not None and y.dtype == dtype and y.shape == xs[:-1] + (o,)
    ref = torch.addmm(torch.from_numpy(b), torch.from_numpy(x.reshape(-1, xs[-1])),
                      torch.from_numpy(w).T).numpy().reshape(y.shape)
    scale = np.sqrt(xs[-1])  # sums of k terms of size ~1: rounding grows with sqrt(k)
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(y, x @ w.T + b, rtol=tol, atol=tol * scale)


@needs_path
def test_linear_uses_it_and_keeps_its_gradients(monkeypatch):
    monkeypatch.setattr(_blas, "MIN_BYTES", 0)
    calls = count_calls(monkeypatch, _blas, "addmm")
    x = fv.randn(4, 3, dtype=fv.float64, requires_grad=True)
    lin = fv.nn.Linear(3, 2, dtype=fv.float64)
    lin(x).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(x.grad.data, np.tile(lin.weight.data.sum(0), (4, 1)), rtol=1e-14)
    np.testing.assert_allclose(lin.bias.grad.data, [4.0, 4.0])


@pytest.mark.parametrize("case", ["transposed x", "int", "mixed dtypes", "1-D x", "no rows",
                                  "no columns", "strided weight"])
def test_declines_what_it_does_not_cover_and_linear_still_computes_it(case, monkeypatch):
    monkeypatch.setattr(_blas, "MIN_BYTES", 0)  # declined for the case's reason, not its size
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (2, 3), (2,)))
    if case == "transposed x":
        x = np.ascontiguousarray(x.T).T
    elif case == "int":
        x, w, b = (a.astype(np.int64) for a in (x, w, b))
    elif case == "mixed dtypes":
        b = b.astype(np.float64)
    elif case == "1-D x":
        x = x[0]
    elif case == "no rows":
        x = x[:0]
    elif case == "no columns":
        x, w = x[:, :0], w[:, :0]
    elif case == "strided weight":
        w = np.ascontiguousarray(np.repeat(w, 2, axis=1))[:, ::2]
    assert _blas.addmm(x, w, b) is None
    if case not in ("int", "mixed dtypes"):  # F.linear itself refuses neither, NumPy computes
        got = F.linear(fv.tensor(x), fv.tensor(w), fv.tensor(b)).data
        np.testing.assert_allclose(got, x @ w.T + b, rtol=1e-6)


@needs_path
def test_small_outputs_take_numpys_path():
    x, w, b = (np.ones(s, np.float32) for s in ((256, 512), (10, 512), (10,)))
    assert _blas.addmm(x, w, b) is None  # 10 KiB of output: the add after the product is cheap
    assert _blas.addmm(x, np.ones((128, 512), np.float32), np.ones(128, np.float32)) is not None


def test_without_numba_or_when_switched_off_numpy_computes_it(monkeypatch):
    monkeypatch.setattr(_blas, "MIN_BYTES", 0)
    x, w, b = (np.ones(s, np.float32) for s in ((2, 3), (4, 3), (4,)))
    with without_compiled("_addmm_kernels"):
        assert _blas.addmm(x, w, b) is None
        np.testing.assert_array_equal(F.linear(fv.tensor(x), fv.tensor(w), fv.tensor(b)).data,
                                      np.full((2, 4), 4.0))
    monkeypatch.setattr(blas, "_gemm", {})  # looked up again, with the switch set
    monkeypatch.setenv("FOVEANET_ADDMM", "0")
    assert _blas.gemm(np.float32) is None and _blas.addmm(x, w, b) is None
