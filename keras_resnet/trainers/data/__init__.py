"""Datasets by name: every source the trainers read, behind one call.

--dataset=cifar10: pickle/binary batches or an image tree (folder or tar) in
  --data_dir, held in memory; else TFDS.
--dataset=imagenet2012: TFRecord shards (train-*-of-*) or raw train/<wnid>/
  folders in --data_dir, streamed; else TFDS (tarballs in --tfds_manual_dir).
--dataset=folder: any image tree, folder or tar; --dataset=tfrecord: shards
  in ImageNet's format (python -m keras_resnet.trainers.prepare makes them).
Any other name: that TFDS image-classification dataset.
"""

import os

from keras_resnet.trainers.data.pipeline import Dataset, InputOptions  # noqa: F401

# name -> (image size, classes, train examples, eval examples, preprocessing kind)
SHAPES = {
    "cifar10": (32, 10, 50_000, 10_000, "cifar"),
    "imagenet2012": (224, 1000, 1_281_167, 50_000, "imagenet"),
}
LOCAL_CIFAR_FOLDERS = ("cifar-10-batches-py", "cifar-10-batches-bin", "train")
# The names people type for a dataset, to the name it goes by here (TFDS's).
ALIASES = {"imagenet": "imagenet2012", "imagenet-1k": "imagenet2012", "cifar-10": "cifar10"}


def canonical_name(name):
    return ALIASES.get(name.lower(), name)


def _local_cifar(data_dir):
    """Whether data_dir names a local CIFAR-10 form (or nothing at all, which
    the local reader reports with the forms it reads) rather than TFDS's."""
    from keras_resnet.trainers.data.image_tree import is_tar

    if data_dir is None:
        return False
    if not os.path.exists(data_dir) or is_tar(data_dir):
        return True
    if os.path.basename(os.path.normpath(data_dir)) in LOCAL_CIFAR_FOLDERS[:2]:
        return True
    return any(os.path.isdir(os.path.join(data_dir, sub)) for sub in LOCAL_CIFAR_FOLDERS)


def load_dataset(name, data_dir=None, options=InputOptions(), validation_split=False,
                 use_synthetic_data=False):
    """A `Dataset` for `name` read from `data_dir` (see --dataset, --data_dir)."""
    name = canonical_name(name)
    if use_synthetic_data:
        from keras_resnet.trainers.data.synthetic import synthetic

        if name not in SHAPES:
            raise ValueError(
                f"--use_synthetic_data knows the shapes of {', '.join(SHAPES)}, not {name!r}"
            )
        shape = SHAPES[name]
        if options.image_size and shape[-1] == "imagenet":
            shape = (options.image_size,) + shape[1:]
        return synthetic(name, *shape)
    if name == "cifar10":
        if _local_cifar(data_dir):
            from keras_resnet.trainers.data.cifar10 import cifar10

            return cifar10(data_dir, options, validation_split)
        from keras_resnet.trainers.data.cifar10 import LOCAL_FORMS
        from keras_resnet.trainers.data.tfds_source import tfds_dataset

        return tfds_dataset(name, data_dir, options, validation_split, LOCAL_FORMS)
    from keras_resnet.trainers.data import imagenet

    if name == "imagenet2012":
        return imagenet.imagenet2012(data_dir, options, validation_split)
    if name == "folder":
        return imagenet.folder(data_dir, options, validation_split)
    if name == "tfrecord":
        return imagenet.tfrecords(data_dir, options, validation_split)
    from keras_resnet.trainers.data.tfds_source import tfds_dataset

    return tfds_dataset(name, data_dir, options, validation_split)
