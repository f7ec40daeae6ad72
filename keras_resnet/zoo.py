"""Every model by name: the public builders and the registry behind `--model`."""

from keras_resnet.resnet import CIFAR_DEPTHS, IMAGENET_DEPTHS, cifar_resnet, imagenet_resnet

PLAIN_IMAGENET_DEPTHS = (18, 34)
PLAIN_CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def _builder(family, depth, residual, public_name):
    def build(*args, **kwargs):
        return family(depth, *args, residual=residual, **kwargs)

    kind = "ResNet" if residual else "plain net (no shortcuts)"
    data = "ImageNet" if family is imagenet_resnet else "CIFAR"
    build.__name__ = build.__qualname__ = public_name
    build.__doc__ = f"The {depth}-layer {data} {kind}; arguments as `{family.__name__}`."
    build.family = family
    return build


MODELS = {}
for _depth in IMAGENET_DEPTHS:
    MODELS[f"resnet{_depth}"] = _builder(imagenet_resnet, _depth, True, f"ResNet{_depth}")
for _depth in CIFAR_DEPTHS:
    MODELS[f"resnet{_depth}"] = _builder(cifar_resnet, _depth, True, f"ResNet{_depth}")
for _depth in PLAIN_IMAGENET_DEPTHS:
    MODELS[f"plain{_depth}"] = _builder(imagenet_resnet, _depth, False, f"Plain{_depth}")
for _depth in PLAIN_CIFAR_DEPTHS:
    MODELS[f"plain{_depth}"] = _builder(cifar_resnet, _depth, False, f"Plain{_depth}")


def list_models():
    """All model names that `get_model` accepts, in depth order per family."""
    return sorted(MODELS, key=lambda n: (n.startswith("plain"), int(n.lstrip("resnetplain"))))


def is_cifar_model(name):
    """Whether a zoo name is a CIFAR (32x32, 3-stage) net."""
    return MODELS[name].family is cifar_resnet


def get_model(name, **kwargs):
    """Builds the zoo model `name` (case-insensitive), e.g. "resnet56"."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        raise ValueError(
            f"model={name!r} is unknown; allowed: {', '.join(list_models())}"
        )
    return MODELS[key](**kwargs)
