"""Shared by every test file: quiet TensorFlow, real photos and the real
CIFAR-10 copy as inputs, and CI's split of the suite between Bazel and pytest."""

import functools
import os

# Before anything imports TensorFlow: its C++ INFO lines drown pytest's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--first-test-per-file", choices=("only", "skip"),
        help="only: run just the first collected test of each file; skip: all "
        "but those. CI runs each test once: the first ones under Bazel "
        "(.ci/bazel: every target imports, finds its data and runs), the rest "
        "under pytest (.ci/run)")


def pytest_collection_modifyitems(config, items):
    split = config.getoption("first_test_per_file")
    if split is None:
        return
    firsts, rest, files = [], [], set()
    for item in items:
        (rest if item.path in files else firsts).append(item)
        files.add(item.path)
    kept, dropped = (firsts, rest) if split == "only" else (rest, firsts)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory):
    """Session and module fixtures cache decoded datasets here, never in the
    user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_RESNET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    """Each test (and its subprocesses) caches decoded datasets in a fresh
    folder of its own: what one test decoded never changes what another reads."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("KERAS_RESNET_CACHE_DIR", str(folder))
    return folder


@functools.lru_cache(maxsize=None)
def _photo(name, size):
    import skimage.data
    import skimage.transform

    image = skimage.transform.resize(
        getattr(skimage.data, name)(), (size, size), preserve_range=True, anti_aliasing=True
    ).astype("float32")
    image.flags.writeable = False  # cached and shared: copy before changing it
    return image


@pytest.fixture(scope="session")
def photo():
    """`photo(name="chelsea", size=224)`: a real RGB photo from skimage.data
    (chelsea, astronaut, coffee, rocket) as read-only float32 (size, size, 3)
    in [0, 255]."""

    def load(name="chelsea", size=224):
        return _photo(name, size)

    return load


# The smallest zoo net of each family, whose builder and blocks the deeper ones
# share: the tests that build many models build these.
FAMILIES = ("resnet18", "resnet50", "plain18", "resnet20", "plain20")

DATA_DIR_VARIABLE = "KERAS_RESNET_DATA_DIR"


def data_dir():
    """$KERAS_RESNET_DATA_DIR, else the datasets folder beside the checkout:
    ../shared/datasets from the real (symlink-resolved) repository root, so
    that Bazel's runfiles, which link to the checkout, find it too."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    return os.environ.get(DATA_DIR_VARIABLE) or os.path.realpath(
        os.path.join(root, "..", "shared", "datasets"))


def shared_cifar10():
    """The path of the real CIFAR-10 archive (cifar10-jpeg.tar.gz). Where it is
    missing the calling test is skipped, or fails when $CI is set: CI must
    not pass by skipping the tests on real data."""
    path = os.path.join(data_dir(), "cifar10-jpeg.tar.gz")
    if not os.path.isfile(path):
        message = (f"{path} is missing: set {DATA_DIR_VARIABLE} to the folder that "
                   "holds cifar10-jpeg.tar.gz")
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so the real data must be there)",
                        pytrace=False)
        pytest.skip(message)
    return path


@functools.lru_cache(maxsize=None)
def _cifar_test_images(per_class):
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    from keras_resnet.cifar_utils import CLASS_NAMES

    wanted = {f"cifar10/test/{name}/{i:04d}.jpg": label
              for label, name in enumerate(CLASS_NAMES) for i in range(per_class)}
    found = {}
    with tarfile.open(shared_cifar10()) as tar:  # the test split comes first
        for member in tar:
            if member.name in wanted:
                data = tar.extractfile(member).read()
                found[member.name] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            if len(found) == len(wanted):
                break
    names = sorted(wanted, key=lambda n: (wanted[n], n))
    images, labels = np.stack([found[n] for n in names]), np.array([wanted[n] for n in names])
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


@pytest.fixture(scope="session")
def cifar_test_images():
    """`cifar_test_images(per_class)`: the first `per_class` test images of
    each class from the shared CIFAR-10 copy, read-only (uint8 NHWC, labels),
    decoded without TensorFlow."""
    return _cifar_test_images


def cifar_subset(path, train_per_class, test_per_class):
    """Writes a .tar.gz of the shared copy's first images of each class, in
    the shared archive's own layout; returns its path as a string."""
    import collections
    import tarfile

    limits = {"train": train_per_class, "test": test_per_class}
    counts = collections.Counter()
    with tarfile.open(shared_cifar10()) as src, tarfile.open(path, "w:gz") as out:
        for member in src:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and counts[parts[1], parts[2]] < limits[parts[1]]:
                counts[parts[1], parts[2]] += 1
                out.addfile(member, src.extractfile(member))
    return str(path)


@pytest.fixture(scope="session")
def cifar_slice(tmp_path_factory):
    """A .tar.gz of the real CIFAR-10 copy's first 20 train and 10 test
    images per class (300 in all), in the shared archive's own layout."""
    return cifar_subset(tmp_path_factory.mktemp("cifar") / "cifar10-slice.tar.gz", 20, 10)
