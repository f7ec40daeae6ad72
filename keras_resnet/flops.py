"""Multiply-adds of a forward pass, counted as the paper counts them."""

import keras


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def count_flops(model):
    """Multiply-adds of one forward pass of one image (the paper's "FLOPs").

    Counts convolutions and dense layers, as the paper's Table 1 does; BN,
    ReLU, pooling and additions are a rounding error beside them.
    """
    total = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            out_shape = layer.output.shape
            channels_last = layer.data_format == "channels_last"
            spatial = out_shape[1:3] if channels_last else out_shape[2:4]
            if None in spatial:
                raise ValueError(
                    f"count_flops needs a fixed input size; layer {layer.name!r} "
                    f"has output shape {out_shape}"
                )
            k_h, k_w, c_in, c_out = layer.kernel.shape
            total += spatial[0] * spatial[1] * k_h * k_w * c_in * c_out
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)
