"""Batch normalization by TensorFlow's fused kernel, for the TensorFlow backend.

Outside the builder modules (like preprocessing.py) because it imports
TensorFlow: the builders use it only when Keras runs on TensorFlow, and
`import keras_resnet` loads it only then (so that load_model finds the
class), so the builders still run under KERAS_BACKEND=jax or torch.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_resnet")
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization computed by TensorFlow's fused kernel.

    Named as Keras' layer, so that weight files address its variables alike
    (.weights.h5 files key layers by class name): files saved from models
    with either layer load into the other.

    Keras 3 normalizes in separate ops (moments, then an elementwise affine
    map, with float32 casts under mixed precision), each a pass over the
    activations, forward and backward. On the TensorFlow backend this layer
    computes the same thing in one FusedBatchNormV3 (oneDNN on CPUs, cuDNN
    on GPUs), on bfloat16 or float16 activations directly: ResNet-50
    training on CPU runs about twice as fast. Same variables, same
    arguments, same results to float rounding: the moving variance is
    updated with the biased batch variance, as Keras does. Inference (the
    moving statistics) is Keras' own computation, bit for bit, whatever the
    data format (serving folds BN away: keras_resnet.inference); so is
    anything the fused kernel cannot do (other backends, masks, renorm,
    synchronized statistics, inputs other than 4-D with the channel axis
    first or last).
    """

    def _fused_format(self, inputs, mask):
        if keras.backend.backend() != "tensorflow" or mask is not None:
            return None
        if self.renorm or self.synchronized or len(inputs.shape) != 4:
            return None
        if self.epsilon < 1.001e-5:  # the fused kernel's smallest epsilon
            return None
        return {3: "NHWC", 1: "NCHW"}.get(self.axis % 4)  # Keras 3 keeps one int axis

    def call(self, inputs, training=None, mask=None):
        data_format = self._fused_format(inputs, mask)
        if data_format is None or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        x = inputs
        if x.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            x = tf.cast(x, tf.float32)
        channels = x.shape[self.axis]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format=data_format, is_training=True
        )
        # The kernel returns the unbiased (n - 1) variance; Keras keeps the biased one.
        count = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * ((count - 1.0) / count)
        for statistic, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            statistic.assign(
                statistic * self.momentum + tf.cast(value, statistic.dtype) * (1.0 - self.momentum)
            )
        return tf.cast(y, self.compute_dtype)


# The name that says what it is, for code that imports it.
FusedBatchNormalization = BatchNormalization
