"""Character language models (``foveanet.models.charlm``) and their training
(``foveanet.train.language``): the model's state continues a sequence, the task's bits per
character are the cross entropy / ln 2 over every position, truncated BPTT carries the state
from batch to batch detached (no gradient reaches the batch before), an interrupted and resumed
run ends bit-identical, and sampling (temperature, greedy limit, errors)."""
import math

import numpy as np
import pytest

import foveanet as fv
import foveanet.nn.functional as F
from foveanet import nn
from foveanet.data.text import BPTTLoader, Vocabulary, split_by_position, stdlib_corpus
from foveanet.models.charlm import LANGUAGE_MODELS, CharRNN
from foveanet.train import tasks
from foveanet.train.language import (LN2, BPTTTrainer, LanguageModel, LanguageModelMetrics,
                                     detach_state, sample)
from test_train_common import assert_bitwise_equal, weights_of

TEXT = stdlib_corpus(max_chars=6000).text
VOCAB = Vocabulary.from_text(TEXT)
IDS = VOCAB.encode(TEXT)


# ---------------------------------------------------------------------------------- model
@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_the_state_continues_the_sequence(name):
    """Two windows with the state carried give the outputs of the whole sequence at once: what
    truncated BPTT relies on."""
    fv.manual_seed(0)
    model = fv.models.create(name, num_classes=20, embedding_dim=6, hidden=10, layers=2)
    model.eval()
    x = fv.tensor(np.random.default_rng(1).integers(0, 20, (3, 12)))
    with fv.no_grad():
        whole, state = model(x)
        first, mid = model(x[:, :5])
        second, end = model(x[:, 5:], mid)
    assert tuple(whole.shape) == (3, 12, 20)
    np.testing.assert_allclose(np.concatenate([first.numpy(), second.numpy()], 1), whole.numpy(),
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(detach_state(end) if isinstance(end, tuple) else [end],
                    state if isinstance(state, tuple) else [state]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert isinstance(state, tuple) == (name == "char_lstm")


def test_the_model_refuses_what_is_not_characters():
    model = CharRNN(10, 4, 8, 1)
    with pytest.raises(ValueError, match=r"char_lstm: expected character indices, an integer "
                                         r"tensor \(N, T\), got float32 of shape \(2, 1, 28, 28\)"):
        model(fv.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="unknown cell"):
        CharRNN(10, cell="transformer")


# ----------------------------------------------------------------------------------- task
def test_bits_per_char_is_the_cross_entropy_over_ln2():
    rng = np.random.default_rng(0)
    task = tasks.create("language_model")
    assert isinstance(task, LanguageModel) and tasks.from_config(task.config()).name == task.name
    logits = [rng.normal(size=(4, t, 7)).astype(np.float32) for t in (5, 5, 2)]  # ragged last
    targets = [rng.integers(0, 7, (4, t)) for t in (5, 5, 2)]
    metric = task.metrics("val")
    for o, t in zip(logits, targets):
        metric.update(fv.tensor(o), fv.tensor(t))
    got = metric.compute()
    # the mean over every position of all batches (not the mean of the batches' means)
    o = np.concatenate([a.reshape(-1, 7) for a in logits]).astype(np.float64)
    t = np.concatenate([b.reshape(-1) for b in targets])
    lse = np.log(np.exp(o - o.max(1, keepdims=True)).sum(1)) + o.max(1)
    ce = float((lse - o[np.arange(t.size), t]).mean())
    assert got["loss"] == pytest.approx(ce, rel=1e-12)
    assert got["bits_per_char"] == got["loss"] / math.log(2) and LN2 == math.log(2)
    assert got["perplexity"] == pytest.approx(math.exp(ce), rel=1e-12)
    assert got["accuracy"] == pytest.approx(float((o.argmax(1) == t).mean()))
    assert metric.count == t.size and metric.results()["characters"] == t.size
    # the task's loss: the same cross entropy, on one batch, as F.cross_entropy of all positions
    loss = task.loss(fv.tensor(logits[0]), fv.tensor(targets[0]))
    ref = F.cross_entropy(fv.tensor(logits[0].reshape(-1, 7)), fv.tensor(targets[0].reshape(-1)))
    assert float(loss.data) == float(ref.data)
    with pytest.raises(ValueError, match=r"the output must be \(N, T, V\) scores and the target"):
        LanguageModelMetrics().update(fv.tensor(logits[0]), fv.tensor(targets[1][:, :3]))
    with pytest.raises(ValueError, match="BPTTTrainer"):
        task.loss((fv.tensor(logits[0]), None), fv.tensor(targets[0]))


# ----------------------------------------------------------------------------------- BPTT
class Spy(nn.Module):
    """A one-layer GRU language model that records the state it is given and the state it
    returns (with retain_grad, to see whether a later batch's gradient reaches it)."""

    def __init__(self, vocab):
        super().__init__()
        self.inner = CharRNN(vocab, 6, 12, 1, cell="gru")
        self.given, self.returned = [], []

    def forward(self, x, state=None):
        self.given.append(state)
        out, new = self.inner(x, state)
        new.retain_grad()
        self.returned.append(new)
        return out, new


def test_bptt_carries_the_state_detached():
    fv.manual_seed(0)
    model = Spy(len(VOCAB))
    trainer = BPTTTrainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False)
    loader = BPTTLoader(IDS, batch_size=3, bptt=8, steps_per_epoch=4)
    trainer.fit(loader, epochs=2)
    given, returned = model.given, model.returned
    assert len(given) == 8
    for k in range(8):
        if k % 4 == 0:  # every epoch begins anew
            assert given[k] is None
            continue
        state = given[k]
        # the state batch k starts from is the one batch k - 1 ended with ...
        np.testing.assert_array_equal(state.numpy(), returned[k - 1].data)
        # ... detached: a leaf without a graph, and batch k's backward reached nothing of k - 1
        assert state.grad_fn is None and not state.requires_grad
        assert returned[k - 1].grad is None
    assert trainer.history["train_bits_per_char"] == [v / LN2 for v in trainer.history["train_loss"]]


def test_the_state_begins_anew_for_another_batch_size():
    fv.manual_seed(0)
    model = Spy(len(VOCAB))
    trainer = BPTTTrainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False)
    a = next(iter(BPTTLoader(IDS, 3, 8)))
    b = next(iter(BPTTLoader(IDS, 2, 8)))
    trainer.train_step(a)
    trainer.train_step((a.input, a.target))       # no start flag: carried on
    trainer.train_step((b.input, b.target))       # two streams, the state was for three
    assert model.given[1] is not None and model.given[2] is None
    assert tuple(trainer.state.shape) == (1, 2, 12)
    trainer.reset_state()
    assert trainer.state is None and trainer.eval_state is None


def _lm_run(seed, run_dir=None):
    """A small run with every source of state on: dropout (the global generator), Adam, a
    per-batch cosine schedule, clipping, limited epochs that wrap around the text."""
    fv.manual_seed(seed)
    model = fv.models.create("char_lstm", num_classes=len(VOCAB), embedding_dim=8, hidden=16,
                             layers=2, dropout=0.2)
    opt = fv.optim.Adam(model.parameters(), lr=1e-2)
    train_ids, val_ids = split_by_position(IDS, 0.2)
    train = BPTTLoader(train_ids, 4, 12, steps_per_epoch=40)  # 99 windows: epochs go on, wrap
    val = BPTTLoader(val_ids, 4, 12, drop_last=False)
    sched = fv.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4 * len(train))
    trainer = BPTTTrainer(model, opt, scheduler=sched, scheduler_interval="batch",
                          clip_grad_norm=1.0, progress=False, run_dir=run_dir)
    return model, trainer, train, val


def test_resume_is_bit_identical(tmp_path):
    model, trainer, train, val = _lm_run(0)
    hist_a = trainer.fit(train, val, epochs=4)
    w_a = weights_of(model)

    model, trainer, train, val = _lm_run(0, tmp_path)
    trainer.fit(train, val, epochs=2)
    fv.randn(1000)  # the process goes on drawing, then ends

    model, trainer, train, val = _lm_run(77, tmp_path)   # everything is restored
    hist_b = trainer.fit(train, val, epochs=4, resume=tmp_path)
    assert trainer.epoch == 4 and train.epoch == 4
    assert_bitwise_equal(w_a, weights_of(model))
    for key in ("train_loss", "train_bits_per_char", "val_loss", "val_bits_per_char",
                "val_perplexity", "lr", "global_step"):
        assert hist_a[key] == hist_b[key], key
    assert hist_a["val_bits_per_char"] == [v / LN2 for v in hist_a["val_loss"]]
    assert hist_a["val_bits_per_char"][-1] < hist_a["val_bits_per_char"][0]


# ------------------------------------------------------------------------------- sampling
def _greedy(model, vocab, prompt, n):
    """The most probable character at every step, by hand."""
    ids = list(vocab.encode(prompt))
    with fv.no_grad():
        for _ in range(n):
            logits, _ = model(fv.tensor(np.asarray([ids])))
            ids.append(int(logits.numpy()[0, -1].argmax()))
    return vocab.decode(np.asarray(ids[len(prompt):]))


def test_sampling_temperature_and_its_greedy_limit():
    model, trainer, train, val = _lm_run(0)
    trainer.fit(train, val, epochs=1)
    model.train()
    greedy = sample(model, VOCAB, "def ", 40, 1e-6, fv.Generator(5))
    assert greedy == _greedy(model.eval(), VOCAB, "def ", 40)
    model.train()
    a = sample(model, VOCAB, "def ", 60, 0.8, fv.Generator(1))
    assert model.training  # the mode is restored
    assert a == sample(model, VOCAB, "def ", 60, 0.8, fv.Generator(1)) and len(a) == 60
    assert a != sample(model, VOCAB, "def ", 60, 0.8, fv.Generator(2))
    assert set(a) <= set(VOCAB.chars)
    assert len(sample(model, VOCAB, "", 10, 1.0, fv.Generator(0))) == 10   # starts from "\n"
    assert sample(model, VOCAB, "x", 0, 1.0) == ""
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            sample(model, VOCAB, "def ", 5, bad)
    with pytest.raises(ValueError, match="length must be an integer >= 0"):
        sample(model, VOCAB, "def ", -1)
    with pytest.raises(ValueError, match=r"the prompt has 1 character not in the vocabulary .*"
                                         r"'€' \(U\+20AC\)"):
        sample(model, VOCAB, "cost: 5€", 5)
