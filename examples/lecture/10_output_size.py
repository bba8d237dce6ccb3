"""Slides "7x7 input (spatially) assume 3x3 filter", "... applied with stride 2", "Output size:
(N - F) / stride + 1" and "Convolutional Neural Network" (zero padding (F - 1) / 2).

``fv.visual.conv_output_size`` is the lecture's formula (with padding P: (N + 2P - F) / stride
+ 1; ``exact=True`` refuses a stride that does not fit), ``fv.visual.same_padding`` the
(F - 1) / 2 that keeps the size; ``fv.visual.plot_sliding_kernel`` draws the sliding kernel.
Each size is checked against a real ``fv.nn.Conv2d``.

    python examples/lecture/10_output_size.py
"""
import foveanet as fv
import foveanet.nn as nn


def conv_size(n, f, stride=1, padding=0):
    with fv.no_grad():
        return nn.Conv2d(1, 1, f, stride=stride, padding=padding)(fv.zeros(1, 1, n, n)).shape[-1]


def main():
    rows = []
    for n, f, s, p in [(7, 3, 1, 0), (7, 3, 2, 0), (7, 3, 1, 1), (32, 5, 1, 0)]:
        formula = fv.visual.conv_output_size(n, f, stride=s, padding=p)
        rows.append((n, f, s, p, formula, conv_size(n, f, s, p)))
        print(f"N={n:>2} F={f} stride={s} pad={p}: (N + 2P - F)/stride + 1 = {formula}, "
              f"Conv2d gives {rows[-1][-1]}x{rows[-1][-1]}")
    try:
        fv.visual.conv_output_size(7, 3, stride=3, exact=True)
        stride3 = "fits"
    except ValueError as e:
        stride3 = "doesn't fit"
        print(f"N=7 F=3 stride=3: {str(e).split(';')[0]}")
    pads = {f: fv.visual.same_padding(f) for f in (3, 5, 7)}
    print(f"zero padding (F - 1)/2 that preserves the size: {pads}")
    return {"rows": rows, "stride3": stride3, "pads": pads}


if __name__ == "__main__":
    main()
