"""Argument checks whose errors name the argument, the value and what is
allowed; and the flags that the binaries' --help lists."""

import sys

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


def list_flags_in_help(flag_values):
    """Makes every flag that keras_resnet modules define a key flag of the
    running program, so that absl's --help and --helpshort list them.

    Those list only the key flags of sys.argv[0]: the console script, or
    the module file under `python -m`. Most flags are defined elsewhere
    (keras_resnet.trainers.flags defines the trainers' groups), and `--help`
    would list none of them. Takes absl's FlagValues, so that this module
    needs no absl.
    """
    for module, flags in flag_values.flags_by_module_dict().items():
        if module.startswith("keras_resnet."):
            for flag in flags:
                flag_values.register_key_flag_for_module(sys.argv[0], flag)
