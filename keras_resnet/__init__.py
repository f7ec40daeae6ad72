"""Deep Residual Learning (He et al., 2015) as Keras 3 functional models.

`keras_resnet.ResNet50()` builds the paper's models with keras.applications'
signature and layer names; `get_model(name)` builds any of them by name.
"""

import keras

from keras_resnet import cifar_utils  # noqa: F401  (keras_resnet.cifar_utils.preprocess_input)
from keras_resnet.blocks import FUSED_BN, ConvSettings, residual_block, shortcut, stage
from keras_resnet.flops import count_flops
from keras_resnet.imagenet_utils import decode_predictions, preprocess_input
from keras_resnet.layers import ZeroPadShortcut
from keras_resnet.regularization import apply_weight_decay
from keras_resnet.resnet import build_resnet, cifar_resnet, imagenet_resnet
from keras_resnet.zoo import MODELS, get_model, is_cifar_model, list_models

if keras.backend.backend() == "tensorflow":
    # Registers the fused BN layer the builders use there, for load_model.
    from keras_resnet import fused_bn  # noqa: F401
else:
    # Files saved under TensorFlow name that layer; elsewhere Keras' own
    # layer computes the same thing from the same config and variables.
    keras.saving.get_custom_objects()[FUSED_BN] = keras.layers.BatchNormalization

__version__ = "0.1.0"

ResNet18 = MODELS["resnet18"]
ResNet34 = MODELS["resnet34"]
ResNet50 = MODELS["resnet50"]
ResNet101 = MODELS["resnet101"]
ResNet152 = MODELS["resnet152"]
ResNet200 = MODELS["resnet200"]
ResNet20 = MODELS["resnet20"]
ResNet32 = MODELS["resnet32"]
ResNet44 = MODELS["resnet44"]
ResNet56 = MODELS["resnet56"]
ResNet110 = MODELS["resnet110"]
ResNet1202 = MODELS["resnet1202"]
Plain18 = MODELS["plain18"]
Plain34 = MODELS["plain34"]
Plain20 = MODELS["plain20"]
Plain32 = MODELS["plain32"]
Plain44 = MODELS["plain44"]
Plain56 = MODELS["plain56"]
Plain110 = MODELS["plain110"]
