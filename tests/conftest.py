"""Shared by every test file: quiet TensorFlow, and real photos as inputs."""

import functools
import os

# Before anything imports TensorFlow: its C++ INFO lines drown pytest's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


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
