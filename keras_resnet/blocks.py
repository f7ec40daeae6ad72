"""Residual blocks, shortcuts and stages, named as keras.applications names them.

A block is a table of convolutions (filters, kernel, stride); `basic` and
`bottleneck` differ only in their tables, and the variants only in where the
stride sits, where BN and ReLU go (v2) and how a shortcut downsamples (d).
Layer names follow keras.applications (`conv3_block2_1_conv`), so any layer is
findable and keras.applications weight files load by name.
"""

import dataclasses

import keras
from keras import layers

from keras_resnet.layers import ZeroPadShortcut

SHORTCUTS = ("A", "B", "C")
VARIANTS = ("v1", "v1.5", "v2", "d")
BLOCKS = ("basic", "bottleneck")
FUSED_BN = "keras_resnet>BatchNormalization"  # keras_resnet.fused_bn


@dataclasses.dataclass(frozen=True)
class ConvSettings:
    """What every conv and BN of one network share, passed as one argument.

    He (fan-in, Gaussian) initialization as in the paper (section 3.4). BN
    epsilon is keras.applications' 1.001e-5 so its weights reproduce exactly.
    """

    data_format: str = "channels_last"
    use_bias: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1.001e-5
    # Batch statistics over all replicas (and their moving averages, so every
    # worker ends with the same weights); the paper's BN is per GPU.
    sync_bn: bool = False
    # On the TensorFlow backend, batch norm by its fused kernel (same results,
    # about 2x faster training on CPU: keras_resnet.fused_bn); False, or any
    # other backend: keras.layers.BatchNormalization.
    fused_bn: bool = True

    @property
    def channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def conv(self, x, filters, kernel_size, strides, name):
        # Strided k>1 convs pad symmetrically (k // 2) like the paper's Caffe
        # and torchvision models; TF's "same" would pad bottom/right only.
        padding = "same"
        if strides > 1 and kernel_size > 1:
            x = layers.ZeroPadding2D(
                kernel_size // 2, data_format=self.data_format, name=name + "_pad"
            )(x)
            padding = "valid"
        return layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.VarianceScaling(
                2.0, "fan_in", "untruncated_normal"
            ),
            data_format=self.data_format,
            name=name + "_conv",
        )(x)

    def bn(self, x, name, zero_gamma=False):
        layer = layers.BatchNormalization
        if self.fused_bn:
            # Registered by keras_resnet.fused_bn, which `import keras_resnet`
            # loads only on the TensorFlow backend.
            layer = keras.saving.get_registered_object(FUSED_BN) or layer
        return layer(
            axis=self.channel_axis,
            momentum=self.bn_momentum,
            synchronized=self.sync_bn,
            epsilon=self.bn_epsilon,
            gamma_initializer="zeros" if zero_gamma else "ones",
            name=name + "_bn",
        )(x)

    def relu(self, x, name):
        return layers.Activation("relu", name=name)(x)


def basic_convs(filters, strides, variant):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""
    del variant  # the stride has only one place to go
    return [(filters, 3, strides), (filters, 3, 1)]


def bottleneck_convs(filters, strides, variant):
    """1x1 reduce, 3x3, 1x1 expand by 4. v1 strides the first 1x1 (paper,
    keras.applications); v1.5, v2 and d stride the 3x3 (torchvision, MLPerf)."""
    first, middle = (strides, 1) if variant == "v1" else (1, strides)
    return [(filters, 1, first), (filters, 3, middle), (4 * filters, 1, 1)]


BLOCK_CONVS = {"basic": basic_convs, "bottleneck": bottleneck_convs}


def shortcut(x, filters, strides, name, *, kind, variant, settings, preact=None):
    """The paper's options: A zero-pads, B projects where the shape changes,
    C projects everywhere. Variant d average-pools before a projection; v2
    projects the pre-activated input `preact`, as keras.applications' V2 does.
    """
    same_shape = x.shape[settings.channel_axis] == filters and strides == 1
    if kind != "C" and same_shape:
        return x
    if kind == "A":
        return ZeroPadShortcut(
            filters, strides, data_format=settings.data_format, name=name + "_0_pad"
        )(x)
    if variant == "d" and strides > 1:
        x = layers.AveragePooling2D(
            strides,
            strides,
            padding="same",
            data_format=settings.data_format,
            name=name + "_0_pool",
        )(x)
        strides = 1
    if preact is not None:
        x = preact
    x = settings.conv(x, filters, 1, strides, name + "_0")
    return x if variant == "v2" else settings.bn(x, name + "_0")


def residual_block(
    x,
    filters,
    strides,
    name,
    *,
    block="basic",
    shortcut_kind="B",
    variant="v1",
    residual=True,
    zero_init_residual=False,
    settings=ConvSettings(),
):
    """One block; `residual=False` drops the shortcut (the paper's plain nets)."""
    convs = BLOCK_CONVS[block](filters, strides, variant)
    out_filters = convs[-1][0]
    preact = variant == "v2"
    raw = x
    if preact:
        x = settings.relu(settings.bn(x, name + "_preact"), name + "_preact_relu")
    if residual:
        skip = shortcut(
            raw, out_filters, strides, name,
            kind=shortcut_kind, variant=variant, settings=settings,
            preact=x if preact else None,
        )
    for i, (f, k, s) in enumerate(convs, start=1):
        last = i == len(convs)
        x = settings.conv(x, f, k, s, f"{name}_{i}")
        if last and preact:
            break
        x = settings.bn(x, f"{name}_{i}", zero_gamma=last and zero_init_residual)
        if not last:
            x = settings.relu(x, f"{name}_{i}_relu")
    if residual:
        x = layers.Add(name=name + "_add")([skip, x])
    return x if preact else settings.relu(x, name + "_out")


def stage(x, filters, blocks, strides, name, **block_kwargs):
    """`blocks` residual blocks; only the first one changes the shape."""
    for i in range(1, blocks + 1):
        x = residual_block(
            x, filters, strides if i == 1 else 1, f"{name}_block{i}", **block_kwargs
        )
    return x
