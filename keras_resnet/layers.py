"""The one layer Keras lacks: the paper's parameter-free option-A shortcut."""

import keras
from keras import ops

from keras_resnet.arguments import standardize_data_format


@keras.saving.register_keras_serializable(package="keras_resnet")
class ZeroPadShortcut(keras.layers.Layer):
    """Identity shortcut where dimensions increase (paper, section 3.3, option A).

    Subsamples by `strides` and appends zero channels up to `filters`, so the
    shortcut adds no parameters, as in the paper's CIFAR-10 networks.
    """

    def __init__(self, filters, strides=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)
        self.data_format = standardize_data_format(data_format)

    def call(self, inputs):
        s = self.strides
        if self.data_format == "channels_last":
            x = inputs[:, ::s, ::s, :]
            pad = self.filters - x.shape[-1]
            return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, pad]])
        x = inputs[:, :, ::s, ::s]
        pad = self.filters - x.shape[1]
        return ops.pad(x, [[0, 0], [0, pad], [0, 0], [0, 0]])

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.strides)

        if self.data_format == "channels_last":
            b, h, w, _ = input_shape
            return (b, sub(h), sub(w), self.filters)
        b, _, h, w = input_shape
        return (b, self.filters, sub(h), sub(w))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "data_format": self.data_format,
        }
