"""The cache of a CIFAR-10 archive's decoded arrays: a rerun reads back the
very arrays the decoder made without decoding; a changed archive, a corrupt
cache file or an interrupted write never gives a reader stale or partial
arrays; the folder follows KERAS_RESNET_CACHE_DIR, XDG_CACHE_HOME, ~/.cache."""

import logging
import os
import shutil
import tarfile

import numpy as np
import pytest
from data_fixtures import cifar_arrays, cifar_tree  # noqa: F401

from keras_resnet.trainers.data import InputOptions, array_cache, cifar10, load_dataset


@pytest.fixture
def archive(cifar_slice, tmp_path):
    """A copy of the 300-image CIFAR slice whose mtime a test may change."""
    path = tmp_path / "cifar10-slice.tar.gz"
    shutil.copyfile(cifar_slice, path)
    return str(path)


@pytest.fixture
def decodes(monkeypatch):
    """Names of the archives' splits decoded (not read from the cache)."""
    calls = []
    real = cifar10._read_tree

    def read_tree(data_dir, split, skip_corrupt):
        calls.append(split)
        return real(data_dir, split, skip_corrupt)

    monkeypatch.setattr(cifar10, "_read_tree", read_tree)
    return calls


def assert_identical(got, want):
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_a_rerun_reads_the_decoded_arrays_back_bit_identical(archive, cifar_arrays, cache_dir,
                                                             decodes):
    for split in ("train", "test"):
        assert_identical(cifar10.load_arrays(archive, split), cifar_arrays[split])
    assert decodes == ["train", "test"]
    names = sorted(os.listdir(cache_dir))
    assert len(names) == 2 and all(n.startswith("cifar10-") and n.endswith(".npz") for n in names)
    for split in ("train", "test"):  # the arrays the decoder made, from the cache
        assert_identical(cifar10.load_arrays(archive, split), cifar_arrays[split])
    assert decodes == ["train", "test"]
    # The whole dataset (mean image, pipelines) from the cache as from a decode.
    dataset = load_dataset("cifar10", archive, InputOptions(deterministic=True, seed=1))
    assert decodes == ["train", "test"] and (dataset.num_train, dataset.num_eval) == (200, 100)
    np.testing.assert_array_equal(dataset.preprocessing.mean_image,
                                  cifar10.mean_image(cifar_arrays["train"][0]))


def test_a_changed_archive_is_decoded_again_into_the_same_file(archive, cifar_arrays, cache_dir,
                                                               decodes):
    cifar10.load_arrays(archive, "train")
    stat = os.stat(archive)
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert_identical(cifar10.load_arrays(archive, "train"), cifar_arrays["train"])
    assert decodes == ["train", "train"]
    assert len(os.listdir(cache_dir)) == 1  # rewritten, no stale file left beside it


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_cache_file_is_ignored_and_rebuilt(archive, cifar_arrays, cache_dir, decodes,
                                                     damage, caplog):
    cifar10.load_arrays(archive, "train")
    (path,) = cache_dir.iterdir()
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 2], "garbage": b"\x00" * 1000,
                      "empty": b""}[damage])
    caplog.set_level(logging.WARNING)
    assert_identical(cifar10.load_arrays(archive, "train"), cifar_arrays["train"])
    assert decodes == ["train", "train"]
    assert any("Ignoring the unreadable cache" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)
    assert_identical(cifar10.load_arrays(archive, "train"), cifar_arrays["train"])
    assert decodes == ["train", "train"]  # rebuilt: read back, not decoded a third time


def test_an_interrupted_write_leaves_no_file_and_the_run_goes_on(archive, cifar_arrays, cache_dir,
                                                                 monkeypatch, caplog):
    def full_disk(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(array_cache.np, "savez", full_disk)
    caplog.set_level(logging.WARNING)
    assert_identical(cifar10.load_arrays(archive, "train"), cifar_arrays["train"])
    assert os.listdir(cache_dir) == []  # neither a partial cache nor its temp file
    assert any("Could not write the cache" in r.getMessage() and "KERAS_RESNET_CACHE_DIR"
               in r.getMessage() for r in caplog.records)


def test_skipped_corrupt_images_are_reported_from_the_cache_and_never_hidden(
        cifar_tree, tmp_path, decodes, caplog):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(os.path.join(cifar_tree, "train"))):
            tar.add(os.path.join(cifar_tree, "train", name), arcname=f"cifar10/train/{name}")
        junk = tmp_path / "junk.jpg"
        junk.write_bytes(b"not a JPEG")
        tar.add(junk, arcname="cifar10/train/cat/9999.jpg")
    caplog.set_level(logging.WARNING)
    for _ in range(2):  # decoded, then from the cache: the skip is reported both times
        caplog.clear()
        images, _ = cifar10.load_arrays(str(path), "train", skip_corrupt=True)
        assert len(images) == 200
        assert any("Skipped 1 corrupt images, first: cifar10/train/cat/9999.jpg"
                   in r.getMessage() for r in caplog.records)
    assert decodes == ["train"]
    with pytest.raises(ValueError, match="cifar10/train/cat/9999.jpg: corrupt"):
        cifar10.load_arrays(str(path), "train")  # without --skip_corrupt: still an error


def test_the_cache_folder_follows_the_env_var_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_RESNET_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert array_cache.cache_dir() == str(tmp_path / "mine")
    monkeypatch.delenv("KERAS_RESNET_CACHE_DIR")
    assert array_cache.cache_dir() == os.path.join(str(tmp_path / "xdg"), "keras_resnet")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert array_cache.cache_dir() == os.path.join(str(tmp_path / "home"), ".cache",
                                                   "keras_resnet")
