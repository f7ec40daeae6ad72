"""One-folder-per-class image trees (`<split>/<class>/<file>`), read from a
folder or straight from a .tar / .tar.gz of one.

The same layout serves CIFAR-10's JPEG copy, ImageNet's raw train tree and
any user dataset; `prepare` turns one into TFRecord shards. A plain class
tree (`<class>/<file>`, no split folders), as
keras.utils.image_dataset_from_directory reads, serves as a training split.
"""

import dataclasses
import os
import tarfile

from absl import logging

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
EVAL_SPLITS = ("validation", "val", "test")  # the eval folders beside train/, first found


@dataclasses.dataclass
class Split:
    """One split of a tree: encoded images (or paths) with integer labels."""

    class_names: list
    names: list  # where each example came from, for error messages
    labels: list
    contents: list = None  # encoded bytes (tar source), else None
    paths: list = None  # file paths (folder source), else None


def is_tar(path):
    return str(path).endswith(TAR_SUFFIXES)


def _class_of(parts, split):
    """Index of the class folder in a member path, allowing one top folder
    (`cifar10/train/cat/0001.jpg`) or none (`train/cat/0001.jpg`); split
    None: a plain class tree (`cat/0001.jpg`, `top/cat/0001.jpg`)."""
    if split is None:
        return len(parts) - 2 if len(parts) in (2, 3) else None
    for i in (0, 1):
        if len(parts) == i + 3 and parts[i] == split:
            return i + 1
    return None


def _finish(source, split, entries):
    if not entries:
        where = ("no train/ folder, nor images in a plain <class>/<image> tree" if split is None
                 else f"no images found under '{split}/<class>/'")
        raise ValueError(f"{source}: {where} (suffixes {', '.join(IMAGE_SUFFIXES)})")
    entries.sort(key=lambda e: (e[0], e[1]))
    class_names = sorted({e[0] for e in entries})
    index = {c: i for i, c in enumerate(class_names)}
    return class_names, entries, [index[e[0]] for e in entries]


def read_tar_split(path, split):
    """Reads every image of `split` (None: a plain class tree) from a tar
    archive into memory."""
    if not os.path.isfile(path):
        raise ValueError(f"data_dir={path!r}: no such archive")
    entries, tops = [], set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.strip("./").split("/")
                i = _class_of(parts, split)
                if i is None or not member.isfile():
                    continue
                if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                    continue
                data = tar.extractfile(member).read()
                entries.append((parts[i], parts[i + 1], member.name, data))
                tops.add(tuple(parts[:i]))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{path}: unreadable tar archive ({error})") from error
    if split is None and len(tops) > 1:
        shown = ", ".join("/".join(t) or "(the archive root)" for t in sorted(tops))
        raise ValueError(f"{path}: class folders sit in several places ({shown}); expected "
                         "<class>/<image>, under one top folder at most")
    class_names, entries, labels = _finish(path, split, entries)
    return Split(class_names, [e[2] for e in entries], labels, contents=[e[3] for e in entries])


def list_folder_split(root, split):
    """Lists `root/<split>/<class>/<image>` (split None: `root/<class>/<image>`)
    without reading the images."""
    folder = root if split is None else os.path.join(root, split)
    if not os.path.isdir(folder):
        raise ValueError(f"data_dir={root!r}: missing folder {folder}")
    entries = []
    for cls in sorted(os.listdir(folder)):
        cls_dir = os.path.join(folder, cls)
        if not os.path.isdir(cls_dir):
            continue
        for name in os.listdir(cls_dir):
            if name.lower().endswith(IMAGE_SUFFIXES):
                entries.append((cls, name, os.path.join(cls_dir, name)))
    class_names, entries, labels = _finish(root, split, entries)
    paths = [e[2] for e in entries]
    return Split(class_names, paths, labels, paths=paths)


def read_split(source, split):
    """A split of a tree held in a folder or a tar archive (split None: the
    whole of a plain class tree)."""
    return read_tar_split(source, split) if is_tar(source) else list_folder_split(source, split)


def read_train(source, names):
    """The training split of a tree whose split folders are `names`
    (split_names): train/, or with neither train/ nor an eval folder, the
    plain class tree itself, which is logged."""
    if "train" in names:
        return read_split(source, "train")
    if names & set(EVAL_SPLITS):
        raise ValueError(f"{source}: no train/ folder beside {sorted(names & set(EVAL_SPLITS))}; "
                         "expected train/<class>/<image>, or a plain <class>/<image> tree")
    train = read_split(source, None)
    logging.info("%s: no train/ folder; its %d class folders (%s) are taken as the training "
                 "split: %d images", source, len(train.class_names),
                 ", ".join(train.class_names), len(train.labels))
    return train


def check_same_classes(source, train, test):
    """Train and test must name the same classes, or labels would disagree."""
    if train.class_names != test.class_names:
        only_train = sorted(set(train.class_names) - set(test.class_names))
        only_test = sorted(set(test.class_names) - set(train.class_names))
        raise ValueError(
            f"{source}: class folders differ between train and test "
            f"(only in train: {only_train}; only in test: {only_test})"
        )


def split_names(source):
    """The split folders (`train`, `test`, ...) a folder or tar tree holds."""
    if not is_tar(source):
        if not os.path.isdir(source):
            raise ValueError(f"data_dir={source!r}: no such folder")
        return {name for name in os.listdir(source) if os.path.isdir(os.path.join(source, name))}
    if not os.path.isfile(source):
        raise ValueError(f"data_dir={source!r}: no such archive")
    names = set()
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                parts = member.name.strip("./").split("/")
                if member.isfile() and len(parts) in (3, 4):
                    names.add(parts[len(parts) - 3])
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{source}: unreadable tar archive ({error})") from error
    return names
