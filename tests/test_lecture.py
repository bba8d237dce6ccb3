"""docs/LECTURE.md and its examples: every example in examples/lecture/ runs and prints the
lecture's numbers, and the page covers every heading of the lecture."""
import importlib.util
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "lecture"
PAGE = ROOT / "docs" / "LECTURE.md"
# The lecture's markdown, beside the checkout in the steering repository's shared/seed/ (or where
# $FOVEANET_LECTURE_SOURCE says); the heading test below runs only where it is present.
LECTURE_SOURCE = Path(os.environ.get("FOVEANET_LECTURE_SOURCE",
                                     ROOT.parent / "shared" / "seed" / "000_68a9e9ae6fbeee95.txt"))

# Every distinct heading of the lecture (its '#' lines, the '#' marks and '**' removed), in order.
LECTURE_HEADINGS = [
    "Deep Learning and Convolutional Neural Networks", "Artificial Intelligence",
    "Fully Connected Neural Network", "$Y_{10x1} = W_{10x100} * X_{100x1}$", "Back Propagation",
    "Chain Rule", "Stochastic Gradient Descent", "History", "Perceptron and Fully Connected NN",
    "Eye as a CNN", "LeNet (1998)", "AlexNet (2012)", "Timeline", "Why the AlexNet started it all?",
    "# of transistors", "2012", "of pixels used in training", "Convolution in Computer Vision",
    "Principle", "Kernel Visualizations", "activation map", "32x32x3 image 5x5x3 filter",
    "7x7 input (spatially) assume 3x3 filter", "=> 5x5 output", "7",
    "7x7 input (spatially) assume 3x3 filter applied with stride 2",
    "Output size: (N - F) / stride + 1", "Convolutional Neural Network", "Map Pooling",
    "Activation Functions", "ReLU (Rectified Linear Unit)", "Leaky ReLU", "Learning CNN",
    "Training Dataset", "Overfitting", "One HotEnd Encoding", "Train Data Shuffling",
    "Augmentations", "Batch Learning", "Regularisation", "Dropout", "Batch Normalisation",
    "Transfer Learning", "BottleNeck", "CPU vs GPU vs TPU", "Compute Primitive",
    "Other Architectures", "VGG16", "ResNet (Residual NN)", "DenseNet, PyramidNet",
    "Recurrent Neural Nets", "Encoders", "Generative Adversarial Network", "Style Transfer",
    "Neural Networks Tools", "TensorFlow", "PyTorch", "Keras", "TensorRT", "There are more ...",
    "DNNX GLUON theano mannet DL4J Caffe", "https://playground.tensorflow.org",
    "Deep Learning Goodfellow, Bengio, Courville MIT Press", "References",
]


def example_files():
    return sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))


def fashion_mnist_available():
    """Both splits are on disk (the examples never download)."""
    from foveanet.data import find_files
    return all(find_files("fashion-mnist", train=t) for t in (True, False))


needs_data = pytest.mark.skipif(not fashion_mnist_available(),
                                reason="Fashion-MNIST is not on this machine (apt-get install "
                                       "dataset-fashion-mnist, or $FOVEANET_DATA)")


@pytest.fixture
def run_example(tmp_path, monkeypatch):
    """Import examples/lecture/NAME and call its main() in an empty working directory with the
    network closed; check that it left no file behind and returned a dict."""
    def connect(*args, **kwargs):
        raise AssertionError("a lecture example tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.chdir(tmp_path)

    def run(name, **kwargs):
        path = EXAMPLES / name
        spec = importlib.util.spec_from_file_location(f"lecture_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.__doc__ and module.__doc__.startswith("Slide"), f"{name}: docstring"
        out = module.main(**kwargs)
        assert isinstance(out, dict) and out, f"{name}: main() returned {out!r}"
        assert not list(tmp_path.iterdir()), f"{name} left files: {list(tmp_path.iterdir())}"
        return out
    return run


# ------------------------------------------------------------------------------------ the examples
def test_01_neuron_is_the_formula(run_example):
    out = run_example("01_neuron.py")
    assert out["y"] == pytest.approx(out["by_hand"], abs=1e-6)
    assert out["params"] == 4


def test_02_fully_connected_is_a_matrix_product(run_example):
    out = run_example("02_fully_connected.py")
    assert out["W_shape"] == (10, 100) and out["Y_shape"] == (10, 1) and out["same"]
    assert out["mlp_params"] == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


def test_03_autograd_matches_the_chain_rule(run_example):
    out = run_example("03_backprop_chain_rule.py")
    assert out["max_diff"] < 1e-9
    assert out["E_after"] < out["E_before"]


@needs_data
def test_04_every_batch_size_lowers_the_loss(run_example):
    out = run_example("04_sgd_online_vs_batch.py")
    assert out["on-line"]["steps"] == 256 and out["mini-batch"]["steps"] == 16
    assert out["full batch"]["steps"] == 1
    for name in ("on-line", "mini-batch", "full batch"):
        assert out[name]["loss"] < out["start"], name
    # the same number of samples seen: more (smaller) updates go further in one epoch
    assert out["on-line"]["loss"] < out["full batch"]["loss"]


@needs_data
def test_05_perceptron_separates_two_classes(run_example):
    out = run_example("05_perceptron.py")
    assert out["params"] == 785
    assert out["errors"][-1] < out["errors"][0]
    assert out["accuracy"] >= 0.98


@needs_data
def test_06_lenet_parameters_and_learning(run_example):
    out = run_example("06_lenet.py")
    assert out["params"] == 61_706
    assert out["loss_last"] < 0.7 * out["loss_first"]


@pytest.mark.slow
def test_07_alexnet_parameters(run_example):
    out = run_example("07_alexnet.py")
    assert out["params"] == 61_100_840
    assert out["kernels"] == [(11, 11), (5, 5), (3, 3), (3, 3), (3, 3)]
    assert out["out_shape"] == (1, 1000)


@needs_data
def test_08_blur_removes_high_frequencies(run_example):
    out = run_example("08_convolution_filters.py")
    assert out["hf_blurred"] < 0.5 * out["hf_image"]
    assert out["flat_edges"] < 1e-6
    assert out["shape"] == (1, 1, 28, 28)


def test_09_six_5x5x3_filters_give_28x28x6(run_example):
    out = run_example("09_activation_maps.py")
    assert out["kernels_shape"] == (6, 3, 5, 5)
    assert out["maps_shape"] == (6, 28, 28)
    assert out["value"] == pytest.approx(out["by_hand"], abs=1e-4)


def test_10_output_size_is_the_lecture_formula(run_example):
    out = run_example("10_output_size.py")
    for n, f, s, p, formula, conv in out["rows"]:
        assert formula == conv == (n + 2 * p - f) // s + 1, (n, f, s, p)
    assert [r[4] for r in out["rows"]] == [5, 3, 7, 28]   # the lecture's 5x5, 3x3, 7x7, 28x28
    assert out["stride3"] == "doesn't fit"
    assert out["pads"] == {3: 1, 5: 2, 7: 3}


def test_11_max_pooling_gives_the_lectures_matrix(run_example):
    out = run_example("11_max_pooling.py")
    assert out["out"] == [[20, 30], [112, 37]]
    assert out["grad_count"] == 4


def test_12_relu_dead_zone_leaky_slope_softmax(run_example):
    out = run_example("12_activations.py")
    assert out["relu_grad"] == [0.0, 0.0, 1.0, 1.0]
    assert out["leaky_grad"] == pytest.approx([0.1, 0.1, 1.0, 1.0])
    assert out["softmax_sum"] == pytest.approx(1.0, abs=1e-6)
    assert out["softmax"] == sorted(out["softmax"], reverse=True)


@needs_data
def test_13_split_is_stratified_and_cross_validation_scores(run_example):
    out = run_example("13_dataset_split_cross_validation.py")
    assert (out["n_train"], out["n_val"], out["n_test"]) == (240, 60, 10_000)
    assert sum(out["val_counts"]) == 60 and max(out["val_counts"]) - min(out["val_counts"]) <= 2
    assert len(out["cv_scores"]) == 3
    assert 0.5 < out["cv_mean"] <= 1.0
    assert out["cv_mean"] == pytest.approx(np.mean(out["cv_scores"]))


@needs_data
def test_14_training_loss_falls_while_validation_loss_turns_up(run_example):
    out = run_example("14_overfitting.py")
    assert out["train_last"] < 0.05 * out["train_first"]
    assert 1 < out["best_step"] < out["steps"]
    assert out["val_last"] > 1.5 * out["val_best"]


@needs_data
def test_15_one_hot_rows_and_cross_entropy(run_example):
    out = run_example("15_one_hot.py")
    assert out["row_sums"] == [1.0] * 4
    assert out["ce"] == pytest.approx(out["by_hand"], rel=1e-5)


@needs_data
def test_16_shuffled_batches_mix_the_classes(run_example):
    out = run_example("16_shuffling.py")
    assert out["sorted"]["classes_per_batch"] <= 2.0
    assert out["shuffled"]["classes_per_batch"] >= 6.0
    assert out["shuffled"]["loss"] < out["sorted"]["loss"]


@needs_data
def test_17_augmentations_change_the_images_keep_the_shape(run_example):
    out = run_example("17_augmentation.py")
    assert set(out["changed"]) == {"flip", "rotation", "scaling", "crop", "translation", "noise"}
    assert all(v > 0.01 for v in out["changed"].values()), out["changed"]
    assert out["flip_mirrors"] and out["chain_len"] == 4 and out["shape"] == (8, 1, 28, 28)


@needs_data
def test_18_penalties_and_smaller_weights(run_example):
    out = run_example("18_regularization.py")
    assert out["l1"] == pytest.approx(0.001 * 3.5)
    assert out["l2"] == pytest.approx(0.001 * 5.25)
    assert out["norm_l2"] < 0.9 * out["norm_plain"]


def test_19_dropout_in_training_only(run_example):
    out = run_example("19_dropout.py")
    assert 0.47 < out["off_fraction"] < 0.53
    assert out["scale"] == pytest.approx(2.0)
    assert out["train_mean"] == pytest.approx(1.0, abs=0.05)
    assert out["eval_identity"]


def test_20_batchnorm_equalises_the_channels(run_example):
    out = run_example("20_batchnorm.py")
    assert out["std_before"][1] > 50 * out["std_before"][0]
    assert np.allclose(out["mean_after"], 0, atol=1e-4)
    assert np.allclose(out["std_after"], 1, atol=1e-2)


@needs_data
def test_21_transfer_learning_trains_the_head_only(run_example):
    out = run_example("21_transfer_learning.py")
    assert out["head"] == ["4.weight", "4.bias"] and out["frozen"] == ["0.weight", "0.bias"]
    assert out["unchanged"]
    assert out["acc_old"] > 0.7 and out["acc_new"] > 0.7


def test_22_bottleneck_arithmetic(run_example):
    out = run_example("22_bottleneck.py")
    assert out["3x3 conv 256->256"]["params"] == 256 * 256 * 3 * 3 == 589_824
    assert out["bottleneck 1x1-3x3-1x1"]["per_layer"] == [256 * 64, 64 * 64 * 9, 64 * 256]
    assert out["3x3 conv 256->256"]["macs"] == 589_824 * 56 * 56
    assert out["bottleneck 1x1-3x3-1x1"]["macs"] == 69_632 * 56 * 56


def test_23_convolution_is_a_matrix_product(run_example):
    out = run_example("23_compute_primitive.py")
    assert out["max_diff"] < 1e-4
    assert out["devices"] == ["cpu"] and out["refused"]
    assert out["algorithms"][-1] == "im2col"


@pytest.mark.slow
def test_24_vgg16_only_3x3_kernels(run_example):
    out = run_example("24_vgg16.py")
    assert out["params"] == 138_357_544
    assert (out["convs"], out["linears"]) == (13, 3)
    assert out["kernel_sizes"] == [(3, 3)]
    assert out["out_shape"] == (1, 1000)


def test_25_bypasses_carry_the_gradient(run_example):
    out = run_example("25_resnet.py")
    assert out["grad_residual"] > 1e3 * out["grad_plain"]
    assert out["params"] == {20: 269_722, 56: 853_018, 110: 1_727_962}
    assert out["out_shape"] == (2, 10)


def test_26_densenet_pyramidnet_counts(run_example):
    out = run_example("26_densenet_pyramidnet.py")
    assert out["densenet_params"] == 769_162
    assert out["pyramidnet_params"] == 1_772_706
    assert out["shapes"] == [(2, 10), (2, 10)]
    widths = out["pyramid_widths"][1:]
    assert widths == sorted(widths) and widths[-1] > widths[0]   # the pyramid: width only grows


def test_27_lstm_learns_the_next_value(run_example):
    out = run_example("27_lstm.py")
    assert out["y_shape"] == (8, 30, 16) and out["h_shape"] == (1, 8, 16)
    assert out["loss_last"] < 0.2 * out["loss_first"]


@needs_data
def test_28_hopfield_recalls_from_noise(run_example):
    out = run_example("28_hopfield.py")
    assert all(b < 0.85 for b in out["before"])
    assert all(a > 0.97 for a in out["after"])
    assert all(r < n for r, n in zip(out["energy_recalled"], out["energy_noisy"]))


@needs_data
def test_29_denoising_autoencoder_learns(run_example):
    out = run_example("29_autoencoder.py")
    assert out["code_shape"] == (1, 16)
    assert out["loss_last"] < 0.7 * out["loss_first"]


@pytest.mark.slow
@needs_data
def test_30_gan_discriminator_tells_real_from_generated(run_example):
    out = run_example("30_gan.py")
    assert out["fake_shape"] == (64, 1, 28, 28)
    assert out["d_real"] > out["d_fake"]
    assert np.isfinite(out["d_loss"]) and np.isfinite(out["g_loss"])


@needs_data
def test_31_style_transfer_lowers_the_loss(run_example):
    out = run_example("31_style_transfer.py")
    assert out["gram_shape"] == (1, 3, 3) and out["image_shape"] == (3, 32, 32)
    assert out["total_last"] < 0.5 * out["total_first"]
    assert out["style_last"] < out["style_first"]


@pytest.mark.slow
@needs_data
def test_32_pytorch_shaped_api_and_fit(run_example):
    out = run_example("32_frameworks.py")
    if out["torch_diffs"] is not None:
        assert out["torch_diffs"][0] < 1e-5 and out["torch_diffs"][1] < 1e-5
    assert len(out["train_loss"]) == 3 and out["train_loss"][-1] < out["train_loss"][0]
    assert "val_accuracy" in out["keys"]


def test_33_onnx_round_trip(run_example):
    out = run_example("33_onnx.py")
    assert out["file_bytes"] > 10_000
    assert out["reloaded_diff"] < 1e-5 and out["optimized_diff"] < 1e-4
    if out["onnxruntime_diff"] is not None:
        assert out["onnxruntime_diff"] < 1e-4


def test_34_playground_circle(run_example):
    out = run_example("34_playground.py")
    assert out["train_after"] < 0.5 * out["train_before"]
    assert out["test_after"] < 0.5 * out["test_before"]
    assert out["test_accuracy"] > 0.85


def test_an_example_runs_as_a_script(tmp_path):
    import subprocess
    done = subprocess.run([sys.executable, str(EXAMPLES / "11_max_pooling.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[[20, 30], [112, 37]]" in done.stdout
    assert not list(tmp_path.iterdir())


def test_every_example_has_a_test():
    tested = {m.group(1) for m in re.finditer(r'run_example\("([^"]+)"', Path(__file__).read_text())}
    assert tested == set(example_files())


# ---------------------------------------------------------------------------------------- the page
def test_page_names_every_example_and_only_existing_ones():
    text = PAGE.read_text(encoding="utf-8")
    named = set(re.findall(r"examples/lecture/([0-9][0-9]_\w+\.py)", text))
    assert set(example_files()) - named == set(), "examples the page does not name"
    assert named - set(example_files()) == set(), "the page names examples that do not exist"


def test_page_covers_every_heading_of_the_lecture():
    text = " ".join(PAGE.read_text(encoding="utf-8").replace("**", "").split())
    missing = [h for h in LECTURE_HEADINGS if " ".join(h.split()) not in text]
    assert not missing, f"lecture headings missing from docs/LECTURE.md: {missing}"


@pytest.mark.skipif(not LECTURE_SOURCE.is_file(), reason="the lecture's source is not here")
def test_heading_list_matches_the_lecture():
    seen = []
    for line in LECTURE_SOURCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            h = re.sub(r"^#+\s*", "", line).replace("**", "").strip()
            if h not in seen:
                seen.append(h)
    assert seen == LECTURE_HEADINGS


def test_page_relative_links_exist():
    text = PAGE.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [u.split("#")[0] for u in links if not re.match(r"[a-z]+:", u) and not u.startswith("#")]
    assert len(relative) > 30
    broken = [u for u in relative if u and not (PAGE.parent / u).exists()]
    assert not broken, f"broken links in docs/LECTURE.md: {broken}"


def test_page_table_of_contents_points_at_its_sections():
    text = PAGE.read_text(encoding="utf-8")
    anchors = re.findall(r"\]\(#([^)]+)\)", text)
    headings = re.findall(r"^##+ (.+)$", text, flags=re.M)

    def slug(h):   # GitHub's anchors: lower case, punctuation dropped, spaces to dashes
        return re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
    assert len(anchors) >= 20
    assert set(anchors) <= {slug(h) for h in headings}, set(anchors) - {slug(h) for h in headings}
