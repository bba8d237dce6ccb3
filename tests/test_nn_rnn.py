"""Recurrent layers (nn.RNN, LSTM, GRU and their cells) and nn.utils.rnn's packing: PyTorch's
numbers for outputs, final states and every gradient (input, initial states, each parameter)
over drawn configurations and both loops (compiled and NumPy), and float64 finite differences."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import foveanet as fv
from foveanet.nn.utils import rnn as rnn_utils
from helpers import copy_params_to_torch, gradcheck, rel_close, without_compiled

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]
RTOL = 2e-4


def make_pair(mode, input_size, hidden, dtype=torch.float32, **kw):
    """A foveanet layer and a torch layer with the same weights."""
    cls = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
    if mode.startswith("RNN"):
        kw["nonlinearity"] = "relu" if mode == "RNN_RELU" else "tanh"
    fdt = np.float32 if dtype == torch.float32 else np.float64
    ours = getattr(fv.nn, cls)(input_size, hidden, dtype=fdt, **kw)
    theirs = getattr(torch.nn, cls)(input_size, hidden, dtype=dtype, **kw)
    copy_params_to_torch(ours, theirs)
    return ours, theirs


def _states(out):
    """(output, [final states]) of either library's recurrent layer."""
    y, h = out
    return y, list(h) if isinstance(h, tuple) else [h]


def compare(ours, theirs, x, lengths=None, with_state=False, seed=0, rtol=RTOL, atol=1e-5):
    """Run both layers on x ((T, B, I) or as batch_first says; unbatched (T, I)), packed with
    ``lengths`` when given; compare outputs, final states and every gradient."""
    rng = np.random.default_rng(seed)
    lstm = isinstance(ours, (fv.nn.LSTM,))
    fx, tx = fv.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    states_f = states_t = None
    if with_state:
        d = ours.num_layers * (2 if ours.bidirectional else 1)
        batched = x.ndim == 3
        b = (x.shape[0] if ours.batch_first else x.shape[1]) if batched else None
        p = ours.proj_size or ours.hidden_size
        shapes = [(d, b, p), (d, b, ours.hidden_size)] if batched else [(d, p), (d, ours.hidden_size)]
        arrays = [rng.standard_normal(s).astype(x.dtype) for s in shapes[:2 if lstm else 1]]
        states_f = [fv.tensor(a, requires_grad=True) for a in arrays]
        states_t = [torch.tensor(a, requires_grad=True) for a in arrays]
    if lengths is not None:
        fin = rnn_utils.pack_padded_sequence(fx, lengths, ours.batch_first, enforce_sorted=False)
        tin = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), ours.batch_first,
                                                      enforce_sorted=False)
    else:
        fin, tin = fx, tx
    hf = None if states_f is None else (tuple(states_f) if lstm else states_f[0])
    ht = None if states_t is None else (tuple(states_t) if lstm else states_t[0])
    yf, sf = _states(ours(fin, hf))
    yt, st_ = _states(theirs(tin, ht))
    if lengths is not None:
        assert isinstance(yf, rnn_utils.PackedSequence)
        np.testing.assert_array_equal(yf.batch_sizes.data, yt.batch_sizes.numpy())
        yf, yt = yf.data, yt.data
    rel_close(yf.data, yt.detach().numpy(), rtol, atol, what="output")
    for i, (a, b) in enumerate(zip(sf, st_)):
        rel_close(a.data, b.detach().numpy(), rtol, atol, what=f"final state {i}")
    ups = [rng.standard_normal(t.shape).astype(x.dtype) for t in [yt] + st_]
    sum(((o * fv.tensor(u)).sum() for o, u in zip([yf] + sf, ups)), fv.tensor(0.0)).backward()
    torch.autograd.backward([yt] + st_, [torch.from_numpy(u) for u in ups])
    rel_close(fx.grad.data, tx.grad.numpy(), rtol, atol, what="input gradient")
    for i, (a, b) in enumerate(zip(states_f or [], states_t or [])):
        rel_close(a.grad.data, b.grad.numpy(), rtol, atol, what=f"initial state {i} gradient")
    theirs_p = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        rel_close(p.grad.data, theirs_p[name].grad.numpy(), rtol, atol, what=f"gradient of {name}")


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(MODES))
    cfg = dict(mode=mode, input_size=draw(st.integers(1, 5)), hidden=draw(st.integers(1, 6)),
               num_layers=draw(st.integers(1, 2)), bias=draw(st.booleans()),
               batch_first=draw(st.booleans()), bidirectional=draw(st.booleans()))
    if mode == "LSTM" and cfg["hidden"] > 1 and draw(st.booleans()):
        cfg["proj_size"] = draw(st.integers(1, cfg["hidden"] - 1))
    cfg["steps"] = draw(st.integers(1, 5))
    cfg["batch"] = draw(st.integers(1, 4))
    cfg["input"] = draw(st.sampled_from(["batched", "unbatched", "packed"]))
    if cfg["input"] == "packed":
        cfg["lengths"] = draw(st.lists(st.integers(1, cfg["steps"]), min_size=cfg["batch"],
                                       max_size=cfg["batch"]))
    cfg["with_state"] = draw(st.booleans())
    cfg["seed"] = draw(st.integers(0, 2 ** 16))
    return cfg


def run_config(cfg):
    kw = {k: cfg[k] for k in ("num_layers", "bias", "batch_first", "bidirectional", "proj_size")
          if k in cfg}
    ours, theirs = make_pair(cfg["mode"], cfg["input_size"], cfg["hidden"], **kw)
    rng = np.random.default_rng(cfg["seed"])
    t, b, i = cfg["steps"], cfg["batch"], cfg["input_size"]
    if cfg["input"] == "unbatched":
        shape = (t, i)
    else:
        shape = (b, t, i) if cfg["batch_first"] else (t, b, i)
    x = rng.standard_normal(shape).astype(np.float32)
    compare(ours, theirs, x, cfg.get("lengths"), cfg["with_state"], seed=cfg["seed"])


@settings(max_examples=60)
@given(configs())
def test_layers_match_torch_over_drawn_configurations(cfg):
    run_config(cfg)


@settings(max_examples=25)
@given(configs())
def test_numpy_loop_matches_torch_over_drawn_configurations(cfg):
    with without_compiled("_rnn_kernels"):
        run_config(cfg)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("compiled", [True, False])
def test_longer_sequences_and_wider_layers_match_torch(mode, compiled):
    ours, theirs = make_pair(mode, 24, 40, num_layers=2, bidirectional=True)
    x = np.random.default_rng(1).standard_normal((30, 5, 24)).astype(np.float32)
    if compiled:
        compare(ours, theirs, x, lengths=[30, 7, 19, 30, 1], with_state=True, rtol=5e-4)
    else:
        with without_compiled("_rnn_kernels"):
            compare(ours, theirs, x, lengths=[30, 7, 19, 30, 1], with_state=True, rtol=5e-4)


def test_lstm_projection_bidirectional_stack_matches_torch():
    ours, theirs = make_pair("LSTM", 6, 9, num_layers=3, bidirectional=True, proj_size=4,
                             batch_first=True)
    x = np.random.default_rng(2).standard_normal((4, 7, 6)).astype(np.float32)
    compare(ours, theirs, x, with_state=True)
    compare(ours, theirs, x, lengths=[3, 7, 1, 5], with_state=True)


# ---------------------------------------------------------------------- finite differences
def _functional(layer, names):
    """fn(x, *parameter arrays) running ``layer`` with those parameters (for gradcheck)."""
    def fn(x, *params):
        for n, p in zip(names, params):
            layer._parameters[n] = p
        out, h = layer(x)
        return (out, *(h if isinstance(h, tuple) else (h,)))
    return fn


@pytest.mark.parametrize("mode,kw", [("RNN_TANH", {}), ("RNN_RELU", {"bidirectional": True}),
                                     ("LSTM", {"num_layers": 2}), ("LSTM", {"proj_size": 2}),
                                     ("GRU", {"bidirectional": True}), ("GRU", {"bias": False})])
@pytest.mark.parametrize("compiled", [True, False])
def test_gradients_match_finite_differences_in_float64(mode, kw, compiled):
    ours, _ = make_pair(mode, 3, 3, dtype=torch.float64, **kw)
    names = [n for n, _ in ours.named_parameters()]
    params = [p.data.copy() for _, p in ours.named_parameters()]
    x = np.random.default_rng(3).standard_normal((4, 2, 3))
    if mode == "RNN_RELU":
        x = x + 0.5  # away from relu's kink
    if compiled:
        gradcheck(_functional(ours, names), [x, *params], rtol=1e-5, atol=1e-7)
    else:
        with without_compiled("_rnn_kernels"):
            gradcheck(_functional(ours, names), [x, *params], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_packed_input_and_initial_states_match_finite_differences(mode):
    ours, _ = make_pair(mode, 2, 3, dtype=torch.float64, bidirectional=True)
    lstm = mode == "LSTM"

    def fn(x, h0, *c0):
        packed = rnn_utils.pack_padded_sequence(x, [2, 4, 1], enforce_sorted=False)
        out, h = ours(packed, (h0, c0[0]) if lstm else h0)
        padded, _ = rnn_utils.pad_packed_sequence(out)
        return (padded, *(h if lstm else (h,)))

    rng = np.random.default_rng(4)
    states = [rng.standard_normal((2, 3, 3)) for _ in range(2 if lstm else 1)]
    gradcheck(fn, [rng.standard_normal((4, 3, 2)), *states])


# ------------------------------------------------------------------------------------- cells
@pytest.mark.parametrize("cls,kw", [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}),
                                    ("LSTMCell", {}), ("GRUCell", {}), ("GRUCell", {"bias": False})])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(cls, kw, batched):
    ours = getattr(fv.nn, cls)(4, 5, **kw)
    theirs = getattr(torch.nn, cls)(4, 5, **kw)
    copy_params_to_torch(ours, theirs)
    rng = np.random.default_rng(5)
    shape = (3, 4) if batched else (4,)
    sshape = (3, 5) if batched else (5,)
    x = rng.standard_normal(shape).astype(np.float32)
    states = [rng.standard_normal(sshape).astype(np.float32) for _ in range(2 if cls == "LSTMCell" else 1)]
    fx, tx = fv.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    fs = [fv.tensor(s, requires_grad=True) for s in states]
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    fo = ours(fx, tuple(fs) if len(fs) == 2 else fs[0])
    to = theirs(tx, tuple(ts) if len(ts) == 2 else ts[0])
    fo = list(fo) if isinstance(fo, tuple) else [fo]
    to = list(to) if isinstance(to, tuple) else [to]
    for a, b in zip(fo, to):
        rel_close(a.data, b.detach().numpy(), what="cell output")
    ups = [rng.standard_normal(b.shape).astype(np.float32) for b in to]
    sum(((a * fv.tensor(u)).sum() for a, u in zip(fo, ups)), fv.tensor(0.0)).backward()
    torch.autograd.backward(to, [torch.from_numpy(u) for u in ups])
    rel_close(fx.grad.data, tx.grad.numpy(), what="input gradient")
    for a, b in zip(fs, ts):
        rel_close(a.grad.data, b.grad.numpy(), what="state gradient")
    tp = dict(theirs.named_parameters())
    for n, p in ours.named_parameters():
        rel_close(p.grad.data, tp[n].grad.numpy(), what=n)
    # without a state: zeros
    z = ours(fx)
    zt = theirs(tx)
    for a, b in zip(z if isinstance(z, tuple) else [z], zt if isinstance(zt, tuple) else [zt]):
        rel_close(a.data, b.detach().numpy(), what="cell output from zero state")


def test_cell_loop_equals_the_layer():
    cell = fv.nn.LSTMCell(3, 4)
    layer = fv.nn.LSTM(3, 4)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x = fv.randn(6, 2, 3)
    h = c = fv.zeros(2, 4)
    outs = []
    for t in range(6):
        h, c = cell(x[t], (h, c))
        outs.append(h)
    y, (hn, cn) = layer(x)
    np.testing.assert_allclose(fv.stack(outs).data, y.data, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cn.data[0], c.data, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ state dicts
@pytest.mark.parametrize("mode,kw", [("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
                                     ("GRU", {"num_layers": 2}), ("RNN_TANH", {"bias": False})])
def test_state_dicts_move_both_ways_unchanged(mode, kw):
    cls = {"RNN_TANH": "RNN"}.get(mode, mode)
    theirs = getattr(torch.nn, cls)(5, 6, **kw)
    ours = getattr(fv.nn, cls)(5, 6, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (a, pa), (b, pb) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert tuple(pa.shape) == tuple(pb.shape), a
    ours.load_state_dict({k: fv.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((3, 2, 5)).astype(np.float32)
    rel_close(ours(fv.tensor(x))[0].data, theirs(torch.tensor(x))[0].detach().numpy(), what="output")
    back = getattr(torch.nn, cls)(5, 6, **kw)
    back.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in ours.state_dict().items()})
    for k, v in back.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs.state_dict()[k].numpy())


def test_default_initialisation_is_pytorchs():
    fv.manual_seed(0)
    m = fv.nn.LSTM(10, 64, num_layers=2)
    bound = 1 / np.sqrt(64)
    for name, p in m.named_parameters():
        assert np.abs(p.data).max() <= bound, name
        assert abs(p.data.std() - bound / np.sqrt(3)) < 0.1 * bound, name  # U(-b, b) has std b / sqrt 3
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in torch.nn.LSTM(10, 64, 2).named_parameters()]


# -------------------------------------------------------------------------------- behaviour
def test_dropout_between_layers_only_in_training():
    fv.manual_seed(0)
    m = fv.nn.GRU(3, 4, num_layers=2, dropout=0.5)
    x = fv.randn(5, 2, 3)
    m.eval()
    a, b = m(x)[0].data, m(x)[0].data
    np.testing.assert_array_equal(a, b)
    plain = fv.nn.GRU(3, 4, num_layers=2)
    plain.load_state_dict(m.state_dict())
    np.testing.assert_allclose(plain(x)[0].data, a, rtol=1e-6)
    m.train()
    assert not np.allclose(m(x)[0].data, a)
    fv.manual_seed(1)
    first = m(x)[0].data
    fv.manual_seed(1)
    np.testing.assert_array_equal(m(x)[0].data, first)


def test_dropout_on_a_single_layer_warns_as_pytorch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        fv.nn.LSTM(3, 4, dropout=0.3)


def test_final_states_are_taken_at_each_sequences_end():
    m = fv.nn.LSTM(2, 3, bidirectional=True)
    seqs = [fv.randn(n, 2) for n in (5, 2, 4)]
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=False)
    _, (h, c) = m(packed)
    for b, s in enumerate(seqs):
        _, (hb, cb) = m(s)  # unbatched, alone
        np.testing.assert_allclose(h.data[:, b], hb.data, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c.data[:, b], cb.data, rtol=1e-5, atol=1e-6)


def test_no_grad_inference_keeps_nothing_and_matches():
    m = fv.nn.LSTM(4, 5, num_layers=2)
    x = fv.randn(7, 3, 4)
    y = m(x)[0].data
    with fv.no_grad():
        out, (h, c) = m(x)
    assert out.grad_fn is None and not out.requires_grad
    np.testing.assert_array_equal(out.data, y)


def test_truncated_bptt_detached_states_stop_the_gradient():
    m = fv.nn.GRU(2, 3)
    x1, x2 = fv.randn(4, 1, 2, requires_grad=True), fv.randn(4, 1, 2)
    _, h = m(x1)
    out, _ = m(x2, h.detach())
    out.sum().backward()
    assert x1.grad is None
    assert all(p.grad is not None for p in m.parameters())


def test_float64_layers():
    ours, theirs = make_pair("LSTM", 3, 4, dtype=torch.float64, bidirectional=True)
    x = np.random.default_rng(7).standard_normal((5, 2, 3))
    compare(ours, theirs, x, with_state=True, rtol=1e-10, atol=1e-12)


def test_repr():
    assert repr(fv.nn.LSTM(10, 20, num_layers=2, bidirectional=True, batch_first=True)) == \
        repr(torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True, batch_first=True))
    assert repr(fv.nn.GRUCell(3, 4, bias=False)) == repr(torch.nn.GRUCell(3, 4, bias=False))
    # PyTorch's repr leaves the non-linearity out; ours says it when it is not the default
    assert repr(fv.nn.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"


# ------------------------------------------------------------------------------------ errors
def test_errors_name_the_layer_and_the_shapes():
    m = fv.nn.LSTM(4, 5, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM.*input_size. Expected 4, got 3"):
        m(fv.randn(2, 1, 3))
    with pytest.raises(ValueError, match=r"3-D input"):
        m(fv.randn(2, 1, 4, 1))
    with pytest.raises(ValueError, match=r"h_0 of shape \(2, 1, 5\).*got \(1, 1, 5\)"):
        m(fv.randn(2, 1, 4), (fv.zeros(1, 1, 5), fv.zeros(2, 1, 5)))
    with pytest.raises(TypeError, match=r"hx must be a tuple"):
        m(fv.randn(2, 1, 4), fv.zeros(2, 1, 5))
    with pytest.raises(TypeError, match=r"dtype float64"):
        m(fv.randn(2, 1, 4, dtype=fv.float64))
    with pytest.raises(TypeError, match=r"foveanet Tensor"):
        m(np.zeros((2, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"only supported for LSTM"):
        fv.nn.RNNBase("GRU", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match=r"smaller than hidden_size"):
        fv.nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match=r"unknown nonlinearity"):
        fv.nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"input_size must be positive"):
        fv.nn.GRU(0, 4)
    with pytest.raises(ValueError, match=r"GRUCell.*\(batch, 3\)"):
        fv.nn.GRUCell(3, 4)(fv.randn(2, 5))
    with pytest.raises(ValueError, match=r"no time steps"):
        m(fv.randn(0, 1, 4))


# ---------------------------------------------------------------------------- nn.utils.rnn
def _torch_seqs(seqs):
    return [torch.tensor(s.data, requires_grad=True) for s in seqs]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_matches_torch(batch_first, side):
    rng = np.random.default_rng(8)
    seqs = [fv.tensor(rng.standard_normal((n, 2)).astype(np.float32), requires_grad=True)
            for n in (3, 1, 4)]
    ts = _torch_seqs(seqs)
    ours = rnn_utils.pad_sequence(seqs, batch_first, -1.0, side)
    theirs = torch.nn.utils.rnn.pad_sequence(ts, batch_first, -1.0, side)
    np.testing.assert_array_equal(ours.data, theirs.detach().numpy())
    up = rng.standard_normal(theirs.shape).astype(np.float32)
    (ours * fv.tensor(up)).sum().backward()
    (theirs * torch.from_numpy(up)).sum().backward()
    for a, b in zip(seqs, ts):
        np.testing.assert_array_equal(a.grad.data, b.grad.numpy())


@pytest.mark.parametrize("enforce_sorted,lengths", [(True, [4, 3, 3, 1]), (False, [2, 4, 1, 3])])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pack_and_pad_match_torch(enforce_sorted, lengths, batch_first):
    rng = np.random.default_rng(9)
    shape = (4, 4, 3) if batch_first else (4, 4, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    fx, tx = fv.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours = rnn_utils.pack_padded_sequence(fx, lengths, batch_first, enforce_sorted)
    theirs = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first,
                                                     enforce_sorted)
    np.testing.assert_array_equal(ours.data.data, theirs.data.detach().numpy())
    np.testing.assert_array_equal(ours.batch_sizes.data, theirs.batch_sizes.numpy())
    for a, b in ((ours.sorted_indices, theirs.sorted_indices),
                 (ours.unsorted_indices, theirs.unsorted_indices)):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.data, b.numpy())
    pf, lf = rnn_utils.pad_packed_sequence(ours, batch_first, padding_value=7.0, total_length=5)
    pt, lt = torch.nn.utils.rnn.pad_packed_sequence(theirs, batch_first, padding_value=7.0,
                                                    total_length=5)
    np.testing.assert_array_equal(pf.data, pt.detach().numpy())
    np.testing.assert_array_equal(lf.data, lt.numpy())
    up = rng.standard_normal(pt.shape).astype(np.float32)
    (pf * fv.tensor(up)).sum().backward()
    (pt * torch.from_numpy(up)).sum().backward()
    np.testing.assert_array_equal(fx.grad.data, tx.grad.numpy())


def test_pack_sequence_and_unpack_round_trip():
    seqs = [fv.randn(n, 3) for n in (2, 5, 3)]
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=False)
    theirs = torch.nn.utils.rnn.pack_sequence([torch.tensor(s.data) for s in seqs], enforce_sorted=False)
    np.testing.assert_array_equal(packed.data.data, theirs.data.numpy())
    back = rnn_utils.unpack_sequence(packed)
    for a, b in zip(back, seqs):
        np.testing.assert_array_equal(a.data, b.data)
    padded = rnn_utils.pad_sequence(seqs, batch_first=True)
    for a, b in zip(rnn_utils.unpad_sequence(padded, [2, 5, 3], batch_first=True), seqs):
        np.testing.assert_array_equal(a.data, b.data)


def test_packing_errors():
    x = fv.randn(4, 3, 2)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        rnn_utils.pack_padded_sequence(x, [1, 3, 2])
    with pytest.raises(ValueError, match="positive"):
        rnn_utils.pack_padded_sequence(x, [3, 0, 2], enforce_sorted=False)
    with pytest.raises(ValueError, match="3 lengths for a batch of 3|2 lengths for a batch of 3"):
        rnn_utils.pack_padded_sequence(x, [3, 2])
    with pytest.raises(ValueError, match="exceeds the 4 steps"):
        rnn_utils.pack_padded_sequence(x, [5, 2, 1])
    with pytest.raises(ValueError, match="sequence 1 has shape"):
        rnn_utils.pad_sequence([fv.randn(2, 3), fv.randn(2, 4)])
    with pytest.raises(ValueError, match="total_length=2 is shorter"):
        rnn_utils.pad_packed_sequence(rnn_utils.pack_padded_sequence(x, [4, 2, 1]), total_length=2)


# ------------------------------------------------------------------------ several results
def test_recurrence_is_one_function_with_several_results():
    m = fv.nn.LSTM(2, 3)
    y, (h, c) = m(fv.randn(4, 1, 2))
    fn = h.grad_fn.inputs[0].grad_fn  # h_n stacks the layer's second result
    assert fn.name == "RecurrenceBackward"
    assert c.grad_fn.inputs[0].grad_fn is fn  # c_n the same Function's third
    back = y.grad_fn  # y views the rows (T B, H) as (T, B, H): back through the views to fn
    while back is not fn and back.inputs:
        back = back.inputs[0].grad_fn
    assert back is fn
    (c.sum()).backward()  # a gradient through one result only
    assert all(p.grad is not None and np.any(p.grad.data) for p in m.parameters())


def test_checkpointed_chunks_give_plain_bptt_gradients():
    """The lecture's memory warning answered without changing the numbers: an LSTM run over a
    sequence in checkpointed chunks (states passed from chunk to chunk, not detached) gets
    the gradients of the whole sequence in one graph."""
    fv.manual_seed(0)
    lstm = fv.nn.LSTM(3, 5, num_layers=2)
    x, u = fv.randn(24, 2, 3), fv.randn(24, 2, 5)
    y, _ = lstm(x)
    (y * u).sum().backward()
    plain = {n: p.grad.data.copy() for n, p in lstm.named_parameters()}
    lstm.zero_grad()

    def chunk(xs, us, h, c):
        y, (h, c) = lstm(xs, (h, c))
        return (y * us).sum(), h, c

    h = c = fv.zeros(2, 2, 5)
    losses = []
    for t0 in range(0, 24, 5):
        loss, h, c = fv.utils.checkpoint(chunk, x[t0:t0 + 5], u[t0:t0 + 5], h, c)
        losses.append(loss)
    fv.stack(losses).sum().backward()
    for n, p in lstm.named_parameters():
        np.testing.assert_allclose(p.grad.data, plain[n], rtol=1e-5, atol=1e-6, err_msg=n)
