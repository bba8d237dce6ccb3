"""Seeing inside a network (``fv.visual``): what its kernels, activations and gradients show.

::

    from foveanet import visual
    run = fv.load_run("runs/cnn_bn-fashion-mnist-20250101-120000")
    x, _ = run.prepare_image("shirt.png")
    visual.kernels(run.model, "0")                  # (32, 1, 3, 3) weights of layer '0'
    visual.activations(run.model, x)                # {'0': (32, 28, 28), '2': ..., ...}
    m, g = visual.saliency(run.model, x)            # max_c |d logit / d x_c|, d logit / d x
    visual.smoothgrad(run.model, x, n=25, sigma=0.15)
    visual.gradcam(run.model, x, "9")               # (28, 28) in [0, 1]
    visual.maximize(run.model, target_class=3, input_shape=run.input_shape)
    visual.conv_output_size(32, 5)                  # 28: the lecture's (N - F) / stride + 1
    visual.plot_kernels(run.model, "0", "kernels.png")
    visual.plot_sliding_kernel(7, 3, stride=2, padding=1, out="slide.gif")

``maps`` computes (NumPy arrays), ``plots`` draws them (PNG files, matplotlib on an Agg
canvas), ``arithmetic`` is the convolution's output-size formula and its picture, ``page``
gathers pictures into one self-contained HTML page. ``foveanet visualize RUN_DIR [IMAGE]``
(``foveanet.cli.visualize``) does all of it for a trained run.
"""
from .arithmetic import conv_output_size, fits, plot_sliding_kernel, same_padding  # noqa: F401
from .maps import (Saliency, VisualError, activations, conv_layers, default_layers,  # noqa: F401
                   describe_layer, gaussian_blur, get_layer, gradcam, kernels, layer_names,
                   maximize, maximize_grid, predicted_class, prepare_input, resize_map, saliency,
                   smoothgrad, total_variation)
from .page import render_page, write_page  # noqa: F401
from .style import (FeatureNetwork, Stylizer, content_loss, feature_network,  # noqa: F401
                    gram_matrix, save_image, side_by_side, style_loss, stylize, train_stylizer,
                    tv_loss)
from .plots import (mosaic, plot_activations, plot_gradcam, plot_kernels,  # noqa: F401
                    plot_maximized, plot_overlay, plot_saliency)

__all__ = ["conv_output_size", "fits", "plot_sliding_kernel", "same_padding", "Saliency",
           "VisualError", "activations", "conv_layers", "default_layers", "describe_layer",
           "gaussian_blur", "get_layer", "gradcam", "kernels", "layer_names", "maximize",
           "maximize_grid", "predicted_class", "prepare_input", "resize_map", "saliency",
           "smoothgrad", "total_variation", "render_page", "write_page", "mosaic",
           "plot_activations", "plot_gradcam", "plot_kernels", "plot_maximized", "plot_overlay",
           "plot_saliency"]