"""L2 weight decay attached to variables, so any built model can take it."""

import keras


def apply_weight_decay(model, weight_decay, include_bn_and_bias=True):
    """Adds L2 decay to every trainable variable of `model`, or to its
    kernels only with include_bn_and_bias=False.

    The penalty is weight_decay / 2 * sum(w**2), so SGD's update holds
    weight_decay * w: the "weight decay" of the paper, which Caffe and
    fb.resnet.torch apply to every parameter, BN's gamma and beta and the
    classifier's bias included. Returns the number of decayed variables.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay} must be >= 0")
    if not weight_decay:
        return 0
    regularizer = keras.regularizers.L2(weight_decay / 2.0)
    decayed = 0
    for variable in model.trainable_weights:
        is_kernel = variable.path.endswith("kernel")
        if is_kernel or include_bn_and_bias:
            variable.regularizer = regularizer
            decayed += 1
    return decayed
