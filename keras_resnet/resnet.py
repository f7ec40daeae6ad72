"""The ResNet families as tables, and the one builder that reads them.

ImageNet nets (paper, Table 1) and CIFAR nets (section 4.2: 6n+2 layers,
16/32/64 filters) differ only in stem, widths and depth table; plain nets are
the same tables with the shortcuts removed (the degradation experiment).
"""

import sys

import keras
from keras import layers

from keras_resnet import weights as weights_lib
from keras_resnet.arguments import check_choice, standardize_data_format
from keras_resnet.blocks import (
    BLOCKS,
    SHORTCUTS,
    VARIANTS,
    ConvSettings,
    stage,
)

# depth -> (block, blocks per stage): Table 1 of the paper, plus ResNet-200
# from "Identity Mappings in Deep Residual Networks".
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)
STEMS = ("imagenet", "cifar")
POOLINGS = (None, "avg", "max")
# The smallest side each stem accepts: five (ImageNet) or two (CIFAR) halvings.
MIN_SIZE = {"imagenet": 32, "cifar": 8}
DEFAULT_SIZE = {"imagenet": 224, "cifar": 32}


def _input_shape(input_shape, stem, data_format):
    channels_last = data_format == "channels_last"
    if input_shape is None:
        size = DEFAULT_SIZE[stem]
        return (size, size, 3) if channels_last else (3, size, size)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape={input_shape} must have 3 entries (height, width, "
            f"channels) for {data_format}"
        )
    spatial = input_shape[:2] if channels_last else input_shape[1:]
    for side in spatial:
        if side is not None and side < MIN_SIZE[stem]:
            raise ValueError(
                f"input_shape={input_shape} is too small: the {stem} stem needs "
                f"height and width >= {MIN_SIZE[stem]}"
            )
    return input_shape


def _allow_recursion(blocks):
    """Raises (never lowers) Python's recursion limit for a net of `blocks`
    residual blocks.

    Keras walks a functional graph recursively, a few frames per block,
    whenever it builds, saves, loads or clones a model: ResNet-1202 (600
    blocks) needs more than Python's default 1,000. The limit stays raised, so
    that a later load_model or clone_model of the net works too.
    """
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * blocks + 2000))


# For the zoo's deepest net at import, so that a fresh process can
# keras.models.load_model a saved ResNet-1202 (it imports keras_resnet anyway,
# for ZeroPadShortcut).
_allow_recursion(3 * (max(CIFAR_DEPTHS) - 2) // 6)


def _stem(x, stem, variant, settings):
    name = "conv1"
    if stem == "cifar":
        x = settings.conv(x, CIFAR_WIDTHS[0], 3, 1, name)
    elif variant == "d":
        # ResNet-D's deep stem: three 3x3 convs instead of one 7x7.
        for i, (filters, stride) in enumerate([(32, 2), (32, 1), (64, 1)], 1):
            if i > 1:
                x = settings.relu(settings.bn(x, name), name + "_relu")
            name = f"conv1_{i}"
            x = settings.conv(x, filters, 3, stride, name)
    else:
        x = settings.conv(x, IMAGENET_WIDTHS[0], 7, 2, name)
    if variant != "v2":  # v2 leaves the stem's BN-ReLU to the first block.
        x = settings.relu(settings.bn(x, name), name + "_relu")
    if stem == "imagenet":
        x = layers.ZeroPadding2D(1, data_format=settings.data_format, name="pool1_pad")(x)
        x = layers.MaxPooling2D(
            3, strides=2, data_format=settings.data_format, name="pool1_pool"
        )(x)
    return x


def build_resnet(
    depths,
    *,
    block="bottleneck",
    widths=IMAGENET_WIDTHS,
    stem="imagenet",
    shortcut="B",
    variant="v1",
    residual=True,
    zero_init_residual=False,
    use_bias=False,
    bn_momentum=0.9,
    sync_bn=False,
    fused_bn=True,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    data_format=None,
    name="resnet",
):
    """Builds any residual (or plain) net from a depth table.

    `depths[i]` blocks of `widths[i]` filters per stage; every stage but the
    first halves the resolution. `weights` is None or the path of a weights
    file (`.weights.h5`, `.keras`, or a keras.applications legacy `.h5`).
    `fused_bn`: batch norm by TensorFlow's fused kernel (same results, faster
    training; see keras_resnet.fused_bn); False: Keras' own layer.
    """
    check_choice("block", block, BLOCKS)
    check_choice("stem", stem, STEMS)
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_choice("variant", variant, VARIANTS)
    check_choice("pooling", pooling, POOLINGS)
    if len(depths) != len(widths) or min(depths, default=0) < 1:
        raise ValueError(
            f"depths={tuple(depths)} must give >= 1 block for each of the "
            f"{len(widths)} stages of widths={tuple(widths)}"
        )
    if zero_init_residual and variant == "v2":
        raise ValueError(
            "zero_init_residual=True needs a BN at the end of each residual "
            "branch; variant='v2' (pre-activation) has none"
        )
    data_format = standardize_data_format(data_format)
    settings = ConvSettings(data_format, use_bias, bn_momentum, sync_bn=sync_bn, fused_bn=fused_bn)
    if input_tensor is not None and keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        shape = _input_shape(input_shape, stem, data_format)
        inputs = keras.Input(shape=shape, tensor=input_tensor)

    x = _stem(inputs, stem, variant, settings)
    block_kwargs = dict(
        block=block,
        shortcut_kind=shortcut,
        variant=variant,
        residual=residual,
        zero_init_residual=zero_init_residual,
        settings=settings,
    )
    for i, (blocks, filters) in enumerate(zip(depths, widths)):
        x = stage(x, filters, blocks, 1 if i == 0 else 2, f"conv{i + 2}", **block_kwargs)
    if variant == "v2":
        x = settings.relu(settings.bn(x, "post"), "post_relu")

    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        # float32 so that mixed-precision models give float32 probabilities.
        x = layers.Dense(
            classes, activation=classifier_activation, dtype="float32", name="predictions"
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)

    source = keras.utils.get_source_inputs(inputs) if input_tensor is not None else inputs
    _allow_recursion(sum(depths))
    model = keras.Model(source, x, name=name)
    if weights is not None:
        weights_lib.load_weights_file(model, weights)
    return model


def _pretrained(zoo_name, builder_kwargs, weights, include_top, classes):
    """Builds a named model and loads `weights`: None, a file, or a name
    ("imagenet", "cifar10") that `weights_lib` resolves for `zoo_name`."""
    if weights not in weights_lib.PRETRAINED_NAMES:
        return build_resnet(include_top=include_top, classes=classes, weights=weights,
                            **builder_kwargs)
    weights_lib.check_pretrained(zoo_name, weights, include_top=include_top, classes=classes, **{
        k: builder_kwargs[k] for k in ("variant", "shortcut", "input_shape", "data_format")
        if k in builder_kwargs
    })
    path = weights_lib.pretrained_file(zoo_name, weights, include_top)
    if weights == "imagenet" or include_top:
        return build_resnet(include_top=include_top, classes=classes, weights=path,
                            **builder_kwargs)
    # The shipped CIFAR-10 files hold the classifier: load a full model and
    # hand its layers to the headless one.
    full = build_resnet(include_top=True, weights=path, **{
        **builder_kwargs, "classes": weights_lib.REQUIREMENTS[weights]["classes"]})
    headless = build_resnet(include_top=False, classes=classes, **builder_kwargs)
    weights_lib.copy_weights_by_name(full, headless)
    return headless


def imagenet_resnet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    shortcut="B",
    variant="v1",
    residual=True,
    **kwargs,
):
    """An ImageNet ResNet (or plain net) with keras.applications' signature.

    Convolutions keep keras.applications' biases by default (`use_bias=True`),
    so its ResNet50/101/152 weight files load as they are.
    """
    check_choice("depth", depth, tuple(IMAGENET_DEPTHS))
    block, depths = IMAGENET_DEPTHS[depth]
    prefix = "resnet" if residual else "plain"
    kwargs.setdefault("use_bias", True)
    builder_kwargs = dict(
        depths=depths,
        block=block,
        widths=IMAGENET_WIDTHS,
        stem="imagenet",
        shortcut=shortcut,
        variant=variant,
        residual=residual,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classifier_activation=classifier_activation,
        name=name or f"{prefix}{depth}",
        **kwargs,
    )
    return _pretrained(f"{prefix}{depth}", builder_kwargs, weights, include_top, classes)


def cifar_resnet(
    depth,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
    shortcut="A",
    variant="v1",
    residual=True,
    **kwargs,
):
    """A CIFAR ResNet of depth 6n+2 (paper section 4.2), option A by default.

    `input_shape=None` is 32x32 RGB in the data format in force, as
    keras.applications derives its defaults.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth={depth!r} is not a CIFAR ResNet depth: it must be 6n+2 with "
            f"n >= 1 (the paper uses {', '.join(map(str, CIFAR_DEPTHS))})"
        )
    prefix = "resnet" if residual else "plain"
    builder_kwargs = dict(
        depths=((depth - 2) // 6,) * 3,
        block="basic",
        widths=CIFAR_WIDTHS,
        stem="cifar",
        shortcut=shortcut,
        variant=variant,
        residual=residual,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classifier_activation=classifier_activation,
        name=name or f"{prefix}{depth}",
        **kwargs,
    )
    return _pretrained(f"{prefix}{depth}", builder_kwargs, weights, include_top, classes)
