"""The lecture's architectures by name: ``fv.models.create(name, num_classes=..., in_channels=...)``,
``fv.models.list_models()`` and ``fv.models.summary(model, input_shape)``."""
# importing the modules registers their models
from . import alexnet, densenet, perceptron, pyramidnet, resnet, simple, vgg  # noqa: F401
from .registry import create, list_models, lookup, model_options, register_model  # noqa: F401
from .alexnet import AlexNet, alexnet  # noqa: F401
from .autoencoder import VAE, Autoencoder, conv_ae, dense_ae, vae, vae_loss  # noqa: F401
from .charlm import CharRNN, char_gru, char_lstm, char_rnn  # noqa: F401  (registers them)
from .densenet import DenseNet, densenet121, densenet169, densenet201, densenet_bc  # noqa: F401
from .gan import (Discriminator, Generator, dcgan_discriminator, dcgan_generator,  # noqa: F401
                  dcgan_init)
from .hopfield import HopfieldNetwork, RecallInfo, to_binary, to_bipolar  # noqa: F401
from .perceptron import Perceptron, perceptron  # noqa: F401
from .pyramidnet import PyramidNet, pyramidnet  # noqa: F401
from .recurrent import Forecaster, RowClassifier, lstm_forecaster, lstm_rows  # noqa: F401
from .resnet import (CifarResNet, PreActResNet, ResNet, WideResNet, preact_resnet,  # noqa: F401
                     resnet18, resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101,
                     resnet110, resnet152, resnet1202, resnet_cifar, wide_resnet)
from .segmentation import SegNet, UNet, segnet, segnet_small, unet  # noqa: F401
from .simple import cnn_bn, lenet5, mlp  # noqa: F401
from .stylenet import RandomFeatures, TransformNet, style_features, transform_net  # noqa: F401
from .vgg import (VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19,  # noqa: F401
                  vgg19_bn)
from .summary import Summary, layer_macs, summary  # noqa: F401
