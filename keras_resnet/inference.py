"""Inference graphs: batch norm folded into convolutions, optionally bfloat16.

At inference a BatchNormalization after a convolution is a per-channel
affine map, y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, so it
folds into that convolution's kernel and bias:

    scale = gamma / sqrt(var + eps)
    kernel' = kernel * scale          (per output channel)
    bias'   = (b - mean) * scale + beta

`fold_batch_norm(model)` rebuilds a functional model with every such pair
folded: the convolutions keep their names (now with a bias), the folded BN
layers are gone, every other layer is cloned with its weights. What is
foldable is a BN whose input is a Conv2D output that nothing else reads:
all of them in the paper's (v1, v1.5, d) nets, shortcuts of options A, B
and C included; in pre-activation (v2) nets the BN inside each residual
branch, but not the pre-activation BNs that follow an addition, which stay
as they are.

`optimize_for_inference(model, "fold_bn_bf16")` also stores weights and
computes in bfloat16 (the classifier head, its pooling and the outputs stay
float32). `MODES` names the choices of the export flag
--optimize_for_inference.
"""

import keras
import numpy as np

MODES = ("none", "fold_bn", "fold_bn_bf16")
# Layers that stay float32 under "fold_bn_bf16": the head and what feeds it
# (a bfloat16 mean over 64 or 49 positions loses digits for nothing).
FLOAT32_LAYERS = (
    keras.layers.Dense,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Softmax,
)


def _same_channel_axis(conv, bn, rank):
    """Whether bn normalizes the axis that holds conv's output channels."""
    channels = rank - 1 if conv.data_format == "channels_last" else 1
    return bn.axis % rank == channels  # Keras 3 keeps one int axis


def foldable_pairs(model):
    """{conv layer name: bn layer name} for every BN that folds into its conv."""
    _check_functional(model)
    producers = {}
    readers = {}
    for layer in model.layers:
        try:
            inputs, outputs = layer.input, layer.output
        except (AttributeError, ValueError):  # a layer called more than once
            continue
        producers[id(outputs)] = layer
        for tensor in keras.tree.flatten(inputs):
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
    for tensor in keras.tree.flatten(model.outputs):
        readers[id(tensor)] = readers.get(id(tensor), 0) + 1

    pairs = {}
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization) or id(bn.output) not in producers:
            continue
        try:
            source = bn.input
        except (AttributeError, ValueError):
            continue
        conv = producers.get(id(source))
        if (
            type(conv) is not keras.layers.Conv2D
            or readers.get(id(source)) != 1
            or bn.renorm
            or not _same_channel_axis(conv, bn, len(source.shape))
        ):
            continue
        pairs[conv.name] = bn.name
    return pairs


def _check_functional(model):
    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential) or not hasattr(
        model, "_run_through_graph"
    ):
        raise ValueError(
            f"optimize_for_inference needs a functional keras.Model (as keras_resnet "
            f"builds); got {type(model).__name__}"
        )


def _folded_weights(conv, bn):
    """(kernel, bias) of conv followed by bn, computed in float64."""
    kernel = np.asarray(keras.ops.convert_to_numpy(conv.kernel), np.float64)
    channels = kernel.shape[-1]
    bias = (np.asarray(keras.ops.convert_to_numpy(conv.bias), np.float64)
            if conv.use_bias else np.zeros(channels))

    def value(variable, default):
        if variable is None:
            return np.full(channels, default, np.float64)
        return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)

    gamma = value(bn.gamma if bn.scale else None, 1.0)
    beta = value(bn.beta if bn.center else None, 0.0)
    mean = value(bn.moving_mean, 0.0)
    variance = value(bn.moving_variance, 1.0)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return kernel * scale, (bias - mean) * scale + beta


def _policy(layer, bfloat16):
    if not bfloat16:
        return layer.dtype_policy
    if isinstance(layer, FLOAT32_LAYERS):
        return keras.DTypePolicy("float32")
    if isinstance(layer, keras.layers.BatchNormalization):
        # An unfolded BN computes in float32 anyway; keep its statistics so.
        return keras.DTypePolicy("mixed_bfloat16")
    return keras.DTypePolicy("bfloat16")


def fold_batch_norm(model, bfloat16=False):
    """A new functional model equal to `model` at inference, every foldable
    BN folded into its convolution (see the module doc).

    `bfloat16`: weights stored and computed in bfloat16, except the
    classifier head and global pooling, which stay float32, as do the
    outputs. The source model is not changed.
    """
    pairs = foldable_pairs(model)
    folded_bns = set(pairs.values())
    originals = {}

    def clone(layer):
        if layer.name in folded_bns:
            return layer  # never called: call() below passes its input through
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
            config["bias_initializer"] = "zeros"
            config["bias_regularizer"] = config["bias_constraint"] = None
        config["dtype"] = _policy(layer, bfloat16)
        new = layer.__class__.from_config(config)
        originals[new.name] = layer
        return new

    def call(layer, *args, **kwargs):
        if layer.name in folded_bns:
            return args[0]
        return layer(*args, **kwargs)

    new_model = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in new_model.layers:
        source = originals.get(layer.name)
        if source is None or not layer.weights:
            continue
        if layer.name in pairs:
            kernel, bias = _folded_weights(source, model.get_layer(pairs[layer.name]))
            values = [kernel, bias]
        else:
            values = [keras.ops.convert_to_numpy(w) for w in source.weights]
        for variable, value in zip(layer.weights, values):
            variable.assign(keras.ops.cast(np.asarray(value, np.float32), variable.dtype))
    return new_model


def optimize_for_inference(model, mode="fold_bn"):
    """`model` as --optimize_for_inference=`mode` serves it: "none" returns
    it unchanged, "fold_bn" folds BN into convolutions, "fold_bn_bf16" also
    stores weights and computes in bfloat16 with float32 outputs."""
    if mode not in MODES:
        raise ValueError(
            f"optimize_for_inference={mode!r} is not supported; allowed: "
            + ", ".join(repr(m) for m in MODES)
        )
    if mode == "none":
        return model
    return fold_batch_norm(model, bfloat16=mode == "fold_bn_bf16")
