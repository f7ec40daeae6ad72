"""Prints the README's zoo table: our parameters, multiply-adds and shipped
CIFAR-10 test error beside the paper's.

    python benchmarks/zoo_table.py

Builds every zoo model once (about a minute on 2 CPU cores). The paper's
figures (He et al. 2015) live here and nowhere else; the tests compare the zoo
against them too.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_resnet as kr  # noqa: E402
from keras_resnet import weights as weights_lib  # noqa: E402

# Table 1: multiply-adds ("FLOPs") of one 224x224 image, in billions. The
# plain nets have the same figures (section 3.3: "the same number of ... FLOPs").
PAPER_GFLOPS = {
    "resnet18": 1.8,
    "resnet34": 3.6,
    "resnet50": 3.8,
    "resnet101": 7.6,
    "resnet152": 11.3,
    "plain18": 1.8,
    "plain34": 3.6,
}
# Table 6: parameters of the CIFAR-10 ResNets (option A), in millions.
PAPER_CIFAR_MPARAMS = {
    "resnet20": 0.27,
    "resnet32": 0.46,
    "resnet44": 0.66,
    "resnet56": 0.85,
    "resnet110": 1.7,
    "resnet1202": 19.4,
}

# Table 6: CIFAR-10 test error (%) of the ResNets (ResNet-110: best of 5 runs).
PAPER_CIFAR_ERROR = {
    "resnet20": 8.75,
    "resnet32": 7.51,
    "resnet44": 7.17,
    "resnet56": 6.97,
    "resnet110": 6.43,
    "resnet1202": 7.93,
}

HEADER = (
    "| Model | Input | Shortcut | Params | Params (paper) | Multiply-adds | FLOPs (paper) "
    "| Pretrained | Test error (paper) |\n"
    "|---|---|---|---:|---:|---:|---:|---|---:|"
)


def _paper(figure, unit):
    return "—" if figure is None else f"{figure:g} {unit}"


def pretrained(name):
    """What weights= offers, with the shipped CIFAR-10 weights' test error."""
    cells = []
    for weights in weights_lib.available(name):
        results = weights_lib.cifar10_results(name) if weights == "cifar10" else None
        if weights == "imagenet":
            cells.append("imagenet (keras.applications' file)")
        elif results:
            error = 100 * (1 - results["eval_accuracy"])
            cells.append(f"cifar10: {error:.2f}% test error")
    return ", ".join(cells) or "—"


def row(name):
    """One markdown row: the model as `get_model(name)` builds it by default."""
    model = kr.get_model(name)
    cifar = kr.is_cifar_model(name)
    residual = name.startswith("resnet")
    flops = kr.count_flops(model)
    size = "x".join(str(side) for side in model.input_shape[1:3])
    ours_flops = f"{flops / 1e6:.1f} M" if cifar else f"{flops / 1e9:.2f} G"
    return "| " + " | ".join([
        name,
        size,
        ("A" if cifar else "B") if residual else "none (plain)",
        f"{model.count_params() / 1e6:.{3 if cifar else 2}f} M",
        _paper(PAPER_CIFAR_MPARAMS.get(name), "M"),
        ours_flops,
        _paper(PAPER_GFLOPS.get(name), "G"),
        pretrained(name),
        _paper(PAPER_CIFAR_ERROR.get(name), "%"),
    ]) + " |"


def table():
    names = kr.list_models()
    ordered = [n for n in names if not kr.is_cifar_model(n)] + [
        n for n in names if kr.is_cifar_model(n)
    ]
    return "\n".join([HEADER] + [row(name) for name in ordered])


if __name__ == "__main__":
    print(table())
