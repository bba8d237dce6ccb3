"""The README's examples reach 100% on their training sets."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


def test_xor_2_2_1_sigmoid_network_learns_xor_with_plain_sgd():
    from xor import train_xor
    _, y, correct = train_xor(verbose=False)
    assert correct == 4, f"XOR outputs {y.numpy().ravel()}"


@pytest.mark.slow
def test_mlp_softmax_cross_entropy_separates_the_spiral():
    from mlp import train_mlp
    _, acc = train_mlp(verbose=False)
    assert acc == 1.0, f"training accuracy {acc}"
