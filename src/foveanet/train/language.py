"""Language models: the ``language_model`` task, training by truncated back-propagation through
time (``BPTTTrainer``) and sampling text from a trained model.

::

    import foveanet as fv
    from foveanet.data.text import BPTTLoader, Vocabulary, split_by_position, stdlib_corpus
    from foveanet.train.language import BPTTTrainer, sample

    text = stdlib_corpus().text
    vocab = Vocabulary.from_text(text)
    train, val = split_by_position(vocab.encode(text), 0.1)
    model = fv.models.create("char_lstm", num_classes=len(vocab))
    trainer = BPTTTrainer(model, fv.optim.Adam(model.parameters(), lr=2e-3), clip_grad_norm=5.0)
    trainer.fit(BPTTLoader(train, 32, 100), BPTTLoader(val, 32, 100, drop_last=False), epochs=5)
    trainer.history["val_bits_per_char"]
    print(sample(model, vocab, "def ", length=300, temperature=0.8, generator=fv.Generator(0)))

The task
--------
``LanguageModel`` (``task="language_model"``): the output is one score per character of the
vocabulary at every position, (N, T, V), the target the next character's index, (N, T); the
loss is the cross entropy averaged over all N T positions. Its metrics, over the epoch, from the
summed negative log-likelihood of every position (so they are exact also where the last window
of the validation text is shorter): ``loss`` (nats per character; it is the epoch's
``train_loss`` / ``val_loss``), ``bits_per_char`` (the same in bits: loss / ln 2), ``perplexity``
(e^loss) and ``accuracy`` (how often the most probable next character is the right one).

Truncated BPTT
--------------
``BPTTTrainer`` is a ``Trainer`` whose steps carry the recurrent state: the model is called as
``model(x, state)`` and returns ``(logits, state)``; the state it returns for batch k is
detached (``detach_state``: the same numbers, no graph) and handed to batch k + 1, so that
gradients flow back ``bptt`` steps, through batch k + 1 only, while the state still sees the
whole text of each stream. It begins anew (None: zeros) where a batch says ``start``
(``foveanet.data.text.BPTTLoader``: the first batch of every epoch, a wrap-around of a limited
epoch), or where the batch has another number of streams. Validation carries its own state the
same way, begun anew at every evaluation. Everything else (clipping, penalties, callbacks,
checkpoints, divergence checks) is the Trainer's. Resume: checkpoints are written at the end of
an epoch and every epoch begins with a fresh state, so the state needs no file; the loader's
``state_dict`` (the epochs done) says where the next epoch begins, and a resumed run ends with
the same weights, bit for bit, as one that was never interrupted.

Sampling
--------
``sample(model, vocab, prompt, length, temperature, generator)``: the prompt is read through
the model, then ``length`` characters are drawn one at a time from ``softmax(logits /
temperature)`` and fed back. ``temperature`` must be > 0: 1 samples the model's own
distribution, lower values sharpen it, and towards 0 it becomes greedy (always the most
probable character; 0.01 is greedy in practice). A prompt character the vocabulary lacks is a
ValueError naming it.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..nn import functional as F
from ..ops import tensor
from ..random import Generator, numpy_rng
from . import tasks
from .metrics import _np
from .trainer import Trainer

__all__ = ["LanguageModel", "LanguageModelMetrics", "BPTTTrainer", "detach_state", "sample",
           "is_language_model", "TASK", "LN2"]

TASK = "language_model"
LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------- task
def _scores_and_targets(output, target, who):
    """(N T, V) scores and (N T,) targets of a language model's (N, T, V) output."""
    o, t = _np(output), _np(target)
    if o.ndim < 2 or tuple(t.shape) != tuple(o.shape[:-1]):
        raise ValueError(f"{who}: the output must be (N, T, V) scores and the target (N, T) "
                         f"next-character indices; got {tuple(o.shape)} and {tuple(t.shape)}")
    if not xp.issubdtype(t.dtype, xp.integer):
        raise ValueError(f"{who}: the target must be character indices, got dtype {t.dtype}")
    return o.reshape(-1, o.shape[-1]), t.reshape(-1)


class LanguageModelMetrics(tasks.Metric):
    """The epoch's summed negative log-likelihood over every position, and the next-character
    hits: ``loss`` (mean NLL, nats per character), ``bits_per_char`` (loss / ln 2),
    ``perplexity`` (e^loss), ``accuracy``. ``count`` is the number of characters predicted."""

    def reset(self) -> None:
        self.count = 0
        self.nll = 0.0
        self.correct = 0

    def update(self, output, target) -> None:
        o, t = _scores_and_targets(output, target, "language_model")
        if t.size == 0:
            return
        v = o.shape[1]
        if t.min() < 0 or t.max() >= v:
            raise ValueError(f"language_model: target indices must be in [0, {v}), got "
                             f"{t.min()}..{t.max()}")
        o = o.astype(xp.float64)
        top = o.max(axis=1)
        lse = top + xp.log(xp.exp(o - top[:, None]).sum(axis=1))
        rows = xp.arange(t.size)
        self.nll += float((lse - o[rows, t]).sum())
        self.correct += int(xp.count_nonzero(o.argmax(axis=1) == t))
        self.count += int(t.size)

    def compute(self) -> dict:
        if not self.count:
            return {}
        loss = self.nll / self.count
        try:
            perplexity = math.exp(loss)
        except OverflowError:
            perplexity = math.inf
        return {"loss": loss, "bits_per_char": loss / LN2, "perplexity": perplexity,
                "accuracy": self.correct / self.count}

    def results(self) -> dict:
        out = self.compute()
        if out:
            out["characters"] = self.count
        return out


@tasks.register
class LanguageModel(tasks.Task):
    """Next-character prediction: cross entropy averaged over every position of (N, T, V)
    scores against (N, T) indices; loss, bits per character, perplexity and accuracy (see the
    module docstring). A batch is ``(input, target, ...)``, e.g. ``BPTTLoader``'s
    ``TextBatch``."""

    name = TASK

    def loss(self, output, target):
        if not isinstance(output, Tensor) or output.ndim < 2:
            raise ValueError(f"language_model: the output must be (N, T, V) scores, got "
                             f"{type(output).__name__}"
                             + (f" of shape {tuple(output.shape)}" if isinstance(output, Tensor)
                                else "") + " (a model returning (logits, state): BPTTTrainer)")
        v = output.shape[-1]
        t = target.reshape(-1) if isinstance(target, Tensor) else tensor(xp.asarray(target).reshape(-1))
        if t.shape[0] * v != math.prod(output.shape):
            raise ValueError(f"language_model: the target {tuple(target.shape)} does not match "
                             f"the output {tuple(output.shape)} (one index per position)")
        return F.cross_entropy(output.reshape(-1, v), t)

    def metrics(self, stage="val"):
        return LanguageModelMetrics()


def is_language_model(config) -> bool:
    """Whether a run configuration (config.json) is a language-model run."""
    task = config.get("task") if isinstance(config, Mapping) else None
    return isinstance(task, Mapping) and task.get("name") == TASK


# ------------------------------------------------------------------------------ the trainer
def detach_state(state):
    """A recurrent state without its graph: a Tensor detached, a tuple or list of them (an
    LSTM's ``(h, c)``) detached item by item, None as None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"a recurrent state must be a Tensor, a tuple of Tensors or None, got "
                    f"{type(state).__name__}")


def _state_batch(state):
    """The number of streams a state is for (its first Tensor's dimension 1), or None."""
    if isinstance(state, Tensor):
        return int(state.shape[1]) if state.ndim >= 2 else None
    if isinstance(state, (tuple, list)):
        for s in state:
            n = _state_batch(s)
            if n is not None:
                return n
    return None


def _starts(batch) -> bool:
    """Whether ``batch`` (input, target, start) says the state begins anew."""
    if isinstance(batch, (tuple, list)) and len(batch) > 2:
        return bool(batch[2])
    return False


class BPTTTrainer(Trainer):
    """A ``Trainer`` for models called as ``model(x, state) -> (output, state)``, carrying the
    recurrent state from batch to batch, detached (truncated back-propagation through time; see
    the module docstring). The arguments are ``Trainer``'s, for one model; the task defaults
    to ``"language_model"``. ``state`` / ``eval_state``: the state the next training /
    validation batch starts from (None: zeros); ``reset_state()`` clears both."""

    def __init__(self, model, optimizer, *args, task=None, **kwargs):
        if kwargs.get("models") is not None or kwargs.get("optimizers") is not None:
            raise ValueError("BPTTTrainer trains one model: Trainer(model, optimizer, ...)")
        if task is None and kwargs.get("loss_fn") is None:
            task = TASK
        super().__init__(model, optimizer, *args, task=task, **kwargs)
        self.state = None
        self.eval_state = None

    def reset_state(self) -> None:
        """Begin the next training and validation batches from a fresh (zero) state."""
        self.state = self.eval_state = None

    def _carried(self, state, batch, x):
        if _starts(batch) or state is None:
            return None
        n = int(x.shape[0]) if getattr(x, "ndim", 0) else None
        return state if _state_batch(state) == n else None

    def train_step(self, batch) -> dict:
        """One step of truncated BPTT: ``model(x, state)`` from the state the last batch left
        (or a fresh one where the batch ``start``s), the task's loss, backward through this
        window only, the update; the new state is kept, detached, for the next batch."""
        x, y = self.unpack(batch)
        state = self._carried(self.state, batch, x)
        self.zero_grad()
        output, state = self.model(x, state)
        self.state = detach_state(state)
        loss = self.loss_fn(output, y)
        cost = self.penalize(loss)
        self.backward(cost, "loss" if cost is loss else "cost (loss + penalty)")
        self.step()
        self.train_metrics.update(output, y)
        return {"loss": loss} if cost is loss else {"loss": loss, "cost": cost}

    def eval_step(self, batch) -> dict:
        """One validation window, from the state the last validation window left."""
        x, y = self.unpack(batch)
        state = self._carried(self.eval_state, batch, x)
        output, state = self.model(x, state)
        self.eval_state = detach_state(state)
        self.eval_metrics.update(output, y)
        return {"loss": self.loss_fn(output, y)}

    def evaluate(self, loader) -> dict:
        """``Trainer.evaluate`` from a fresh validation state."""
        self.eval_state = None
        return super().evaluate(loader)

    def fit(self, *args, **kwargs):
        """``Trainer.fit``, from fresh states."""
        self.reset_state()
        return super().fit(*args, **kwargs)


# -------------------------------------------------------------------------------- sampling
def _temperature(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"sample: temperature must be a finite number > 0 (towards 0: greedy), "
                         f"got {value!r}")
    return float(value)


def sample(model, vocab, prompt: str = "", length: int = 300, temperature: float = 1.0,
           generator: Generator | None = None) -> str:
    """``length`` characters generated after ``prompt`` by ``model`` (``model(x, state) ->
    (logits, state)``) over ``vocab`` (a ``foveanet.data.text.Vocabulary``): the prompt read
    through the model, then each character drawn from ``softmax(logits / temperature)`` and fed
    back (``generator``: a ``foveanet.Generator``, default the global one). The prompt is not
    part of the result. An empty prompt starts from a newline (the first character of the
    vocabulary if it has none), which is not part of the result either. ValueError for a
    temperature <= 0, a negative length or a prompt character the vocabulary lacks. The model
    runs in eval mode, without gradients (its mode is restored)."""
    temperature = _temperature(temperature)
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
        raise ValueError(f"sample: length must be an integer >= 0, got {length!r}")
    if not isinstance(prompt, str):
        raise TypeError(f"sample: prompt must be a str, got {type(prompt).__name__}")
    primer = prompt or ("\n" if "\n" in vocab else vocab.chars[0])
    try:
        ids = vocab.encode(primer)
    except ValueError as exc:
        raise ValueError(f"sample: the prompt has {exc}") from None
    rng = numpy_rng(generator)
    was_training = model.training
    model.eval()
    out = []
    try:
        with no_grad():
            logits, state = model(tensor(ids.reshape(1, -1)), None)
            for _ in range(int(length)):
                z = logits.data[0, -1].astype(xp.float64) / temperature
                p = xp.exp(z - z.max())
                cdf = xp.cumsum(p)
                c = int(xp.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
                out.append(c)
                logits, state = model(tensor(xp.array([[c]], dtype=xp.int64)), state)
    finally:
        model.train(was_training)
    return vocab.decode(xp.asarray(out, dtype=xp.int64))
