"""Argument checks whose errors name the argument, the value and what is allowed."""

import keras


def check_choice(argument, value, allowed):
    """Rejects a value outside `allowed` with a message naming the argument."""
    if value not in allowed:
        raise ValueError(
            f"{argument}={value!r} is not supported; allowed: "
            + ", ".join(repr(a) for a in allowed)
        )


def standardize_data_format(data_format):
    """None means Keras' configured default, as in keras.applications."""
    data_format = data_format or keras.config.image_data_format()
    check_choice("data_format", data_format, ("channels_last", "channels_first"))
    return data_format
