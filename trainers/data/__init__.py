"""Datasets by name: every source the trainers read, behind one call."""

from trainers.data.pipeline import Dataset, InputOptions  # noqa: F401

# name -> (image size, classes, train examples, eval examples, preprocessing kind)
SHAPES = {
    "cifar10": (32, 10, 50_000, 10_000, "cifar"),
    "imagenet2012": (224, 1000, 1_281_167, 50_000, "imagenet"),
}


def load_dataset(name, data_dir=None, options=InputOptions(), validation_split=False,
                 use_synthetic_data=False):
    """A `Dataset` for `name` read from `data_dir` (see --dataset, --data_dir)."""
    if use_synthetic_data:
        from trainers.data.synthetic import synthetic

        if name not in SHAPES:
            raise ValueError(
                f"--use_synthetic_data knows the shapes of {', '.join(SHAPES)}, not {name!r}"
            )
        return synthetic(name, *SHAPES[name])
    if name == "cifar10":
        from trainers.data.cifar10 import cifar10

        return cifar10(data_dir, options, validation_split)
    raise ValueError(f"--dataset={name!r} is not supported yet; supported: cifar10")
