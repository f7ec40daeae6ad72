"""keras.applications' ResNet input convention and ImageNet class names."""

from keras.applications import resnet as keras_resnet_app


def preprocess_input(x, data_format=None):
    """Caffe-style preprocessing (RGB to BGR, ImageNet mean subtracted), as
    keras.applications.resnet.preprocess_input, which its weights expect."""
    return keras_resnet_app.preprocess_input(x, data_format=data_format)


def decode_predictions(preds, top=5):
    """Top-`top` (class id, class name, score) per image, as keras.applications.

    The class index is downloaded once into ~/.keras/models; offline, a clear
    error says where to put it.
    """
    try:
        return keras_resnet_app.decode_predictions(preds, top=top)
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(
            "decode_predictions needs imagenet_class_index.json and could not "
            f"download it ({error}). Offline, copy that file from a machine "
            "with internet access to ~/.keras/models/imagenet_class_index.json."
        ) from error
