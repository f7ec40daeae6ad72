"""Where the tests find the real CIFAR-10 copy, and what they do without it:
skip on a developer's machine, fail in CI (conftest.shared_cifar10)."""

import os

import pytest

import conftest


def test_the_variable_names_the_folder(tmp_path, monkeypatch):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"")
    monkeypatch.setenv("KERAS_RESNET_DATA_DIR", str(tmp_path))
    assert conftest.shared_cifar10() == str(tmp_path / "cifar10-jpeg.tar.gz")


def test_the_default_is_the_shared_folder_beside_the_real_checkout(monkeypatch):
    monkeypatch.delenv("KERAS_RESNET_DATA_DIR", raising=False)
    checkout = os.path.dirname(os.path.dirname(os.path.realpath(conftest.__file__)))
    assert conftest.data_dir() == os.path.realpath(
        os.path.join(checkout, "..", "shared", "datasets"))


def test_missing_data_skips_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="KERAS_RESNET_DATA_DIR"):
        conftest.shared_cifar10()


def test_missing_data_fails_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        conftest.shared_cifar10()
