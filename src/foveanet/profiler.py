"""An op-level profiler: where does a training step spend its time?

    with fv.profile() as prof:          # prints the table when the block ends
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    with fv.profile(print_on_exit=False) as prof:
        ...
    print(prof)                         # or prof.table(top=10); prof.stats() for the numbers

While the block runs, the profiler is the calling thread's ``profiler`` hook of the engine
(``foveanet.autograd.set_hook``; other threads' ops are not recorded): every
``Function.apply`` (the forward of a primitive) and every Function's backward in
``run_backward`` then reports its duration, and the profiler sums them per (op, phase). The table
lists the ops by total time with their share of the time spent in ops, and ends with the wall time
of the block and the part of it spent outside any op (Python overhead of modules and the engine,
the optimizer step, data handling).

Outside a ``profile`` block the hook is ``None`` and costs one ``is not None`` test per op. Blocks
nest: the inner one installs itself and, on exit, puts back whatever was installed before (an
outer profiler then does not see the inner block's ops).

Caveats: the forward timing covers ``Function.forward`` only (not the Tensor wrapping around it);
an op that calls other primitives inside its own forward would be counted twice (foveanet's ops
compute on raw arrays, so none does); NumPy's BLAS runs on several threads, and the times are
wall-clock times on the calling thread.
"""
from __future__ import annotations

import time

from . import autograd

__all__ = ["Profile", "profile"]


class Profile:
    """Accumulates ``(op, phase) -> [calls, seconds]``; a context manager (see the module doc)."""

    def __init__(self, print_on_exit: bool = True, top: int | None = None):
        self.print_on_exit = print_on_exit
        self.top = top
        self.records: dict = {}
        self.wall = 0.0
        self._prev = None
        self._t0 = None
        self._active = False

    # the hook autograd calls
    def record(self, name: str, phase: str, seconds: float) -> None:
        rec = self.records.get((name, phase))
        if rec is None:
            self.records[(name, phase)] = [1, seconds]
        else:
            rec[0] += 1
            rec[1] += seconds

    # context manager
    def __enter__(self) -> "Profile":
        if self._active:
            raise RuntimeError("this profile is already active; create a new fv.profile() to nest")
        self._prev = autograd.set_hook("profiler", self)
        self._active = True
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        self.wall += time.perf_counter() - self._t0
        autograd.set_hook("profiler", self._prev)
        self._prev, self._active = None, False
        if self.print_on_exit and exc[0] is None:
            print(self.table(self.top))
        return False

    def reset(self) -> None:
        """Forget what was recorded (e.g. after warm-up steps)."""
        self.records.clear()
        self.wall = 0.0
        if self._active:
            self._t0 = time.perf_counter()

    # results
    @property
    def op_seconds(self) -> float:
        """Total time spent inside ops (forward and backward)."""
        return sum(s for _, s in self.records.values())

    def stats(self) -> list:
        """One dict per (op, phase), by total time: op, phase, calls, total_ms, ms_per_call, share
        (of the time spent in ops)."""
        total = self.op_seconds or 1.0
        rows = [dict(op=name, phase=phase, calls=n, total_ms=1e3 * s, ms_per_call=1e3 * s / n,
                     share=s / total)
                for (name, phase), (n, s) in self.records.items()]
        rows.sort(key=lambda r: (-r["total_ms"], r["op"], r["phase"]))
        return rows

    def table(self, top: int | None = None) -> str:
        """The table as text; ``top`` limits it to the most expensive rows."""
        rows = self.stats()
        shown = rows if top is None else rows[:top]
        head = ("op", "phase", "calls", "total ms", "ms/call", "share")
        body = [(r["op"], r["phase"], str(r["calls"]), f"{r['total_ms']:.2f}", f"{r['ms_per_call']:.3f}",
                 f"{100 * r['share']:.1f}%") for r in shown]
        widths = [max(len(x[i]) for x in [head] + body) for i in range(6)]

        def fmt(row):
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        line = "-" * (sum(widths) + 10)
        out = [line, fmt(head), line] + [fmt(b) for b in body]
        if len(shown) < len(rows):
            rest = rows[len(shown):]
            out.append(f"... {len(rest)} more rows, {sum(r['total_ms'] for r in rest):.2f} ms")
        out.append(line)
        ops_ms = 1e3 * self.op_seconds
        wall = self.wall + (time.perf_counter() - self._t0 if self._active else 0.0)
        wall_ms = 1e3 * wall
        out.append(f"in ops: {ops_ms:.2f} ms ({sum(r['calls'] for r in rows)} calls)")
        if wall_ms > 0:
            outside = max(wall_ms - ops_ms, 0.0)
            out.append(f"wall time of the block: {wall_ms:.2f} ms; outside ops (Python overhead, "
                       f"optimizer, data): {outside:.2f} ms ({100 * outside / wall_ms:.1f}%)")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table(self.top)

    def __repr__(self) -> str:
        return f"<Profile: {len(self.records)} (op, phase) rows, {1e3 * self.op_seconds:.2f} ms in ops>"


def profile(print_on_exit: bool = True, top: int | None = None) -> Profile:
    """An op-level profiler for a block: ``with fv.profile(): ...`` prints a table of the time spent
    per op and phase (forward/backward) when the block ends. See ``foveanet.profiler``."""
    return Profile(print_on_exit=print_on_exit, top=top)
