"""The TF Serving folder layout: versions, atomic publication and pruning.

These use a stand-in writer; tests/test_savedmodels.py re-exports real
models while a reader polls.
"""

import os
import stat
import threading

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from keras_resnet.savedmodels import versions

MODELS_CONFIG = os.path.join(os.path.dirname(versions.__file__), "models.config")


def write_marker(folder):
    with open(os.path.join(folder, "saved_model.pb"), "w") as f:
        f.write("complete")


def test_versions_count_up_from_one_and_ignore_other_names(tmp_path):
    base = tmp_path / "resnet20"
    assert versions.next_version(str(base)) == 1
    for name in ["1", "7", ".tmp-export-abc", "notes", "12.bak"]:
        (base / name).mkdir(parents=True)
    (base / "9").write_text("a file, not a version")
    assert versions.versions(str(base)) == [1, 7]
    assert versions.next_version(str(base)) == 8
    path = versions.write_version(str(tmp_path), "resnet20", write_marker)
    assert path == str(base / "8")
    assert (base / "8" / "saved_model.pb").read_text() == "complete"


def test_explicit_version_must_be_free(tmp_path):
    versions.write_version(str(tmp_path), "m", write_marker, version=3)
    assert versions.versions(str(tmp_path / "m")) == [3]
    with pytest.raises(ValueError, match="version=3 already exists"):
        versions.write_version(str(tmp_path), "m", write_marker, version=3)
    with pytest.raises(ValueError, match="version=0 must be >= 1"):
        versions.write_version(str(tmp_path), "m", write_marker, version=0)


def test_failed_write_leaves_no_version_and_no_temp_folder(tmp_path):
    def write_half(folder):
        os.mkdir(os.path.join(folder, "variables"))
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="killed midway"):
        versions.write_version(str(tmp_path), "m", write_half)
    assert os.listdir(tmp_path) == []  # nor an empty model folder it made
    versions.write_version(str(tmp_path), "m", write_marker)
    with pytest.raises(RuntimeError, match="killed midway"):
        versions.write_version(str(tmp_path), "m", write_half)
    assert os.listdir(tmp_path / "m") == ["1"]


def test_the_folder_being_written_is_hidden_and_not_an_integer(tmp_path):
    seen = {}

    def write(folder):
        seen["name"] = os.path.basename(folder)
        seen["parent"] = os.path.dirname(folder)
        seen["listing"] = os.listdir(seen["parent"])
        write_marker(folder)

    versions.write_version(str(tmp_path), "m", write)
    assert seen["parent"] == str(tmp_path / "m")  # same file system: rename is atomic
    assert seen["name"].startswith(".tmp-") and not seen["name"].isdigit()
    assert seen["listing"] == [seen["name"]]  # no version visible while writing


def test_new_version_is_readable_by_other_users(tmp_path):
    old = os.umask(0o022)
    try:
        path = versions.write_version(str(tmp_path), "m", write_marker)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o055 == 0o055, oct(mode)  # TF Serving often runs as another user


def test_keep_versions_prunes_the_oldest_but_never_the_new_one(tmp_path):
    for _ in range(4):
        versions.write_version(str(tmp_path), "m", write_marker)
    assert versions.versions(str(tmp_path / "m")) == [1, 2, 3, 4]
    versions.write_version(str(tmp_path), "m", write_marker, keep_versions=2)
    assert versions.versions(str(tmp_path / "m")) == [4, 5]
    versions.write_version(str(tmp_path), "m", write_marker, keep_versions=1)
    assert sorted(os.listdir(tmp_path / "m")) == ["6"]  # no prune leftovers
    with pytest.raises(ValueError, match="keep_versions=0 must be >= 1"):
        versions.write_version(str(tmp_path), "m", write_marker, keep_versions=0)


def test_keep_versions_never_prunes_versions_above_the_one_written(tmp_path):
    for version in range(1, 7):
        if version != 3:
            versions.write_version(str(tmp_path), "m", write_marker, version=version)
    # Versions 4-6 are being served: an explicit older version leaves them be.
    versions.write_version(str(tmp_path), "m", write_marker, version=3, keep_versions=1)
    assert versions.versions(str(tmp_path / "m")) == [3, 4, 5, 6]
    versions.write_version(str(tmp_path), "m", write_marker, version=7, keep_versions=2)
    assert versions.versions(str(tmp_path / "m")) == [6, 7]


def test_an_exporter_never_prunes_a_version_published_after_its_own(tmp_path, monkeypatch):
    real_publish = versions._publish

    def publish_then_another_exporter_runs(tmp, model_base, version):
        published = real_publish(tmp, model_base, version)
        monkeypatch.setattr(versions, "_publish", real_publish)
        # Between this exporter's rename and its pruning, another one
        # publishes version 2 and prunes, keeping one.
        versions.write_version(str(tmp_path), "m", write_marker, keep_versions=1)
        return published

    monkeypatch.setattr(versions, "_publish", publish_then_another_exporter_runs)
    path = versions.write_version(str(tmp_path), "m", write_marker, keep_versions=1)
    assert path == str(tmp_path / "m" / "1")
    assert sorted(os.listdir(tmp_path / "m")) == ["2"]  # the newest survives


def test_racing_exporters_keep_the_newest_and_do_not_fail(tmp_path):
    count = 8
    barrier = threading.Barrier(count)
    written, errors = [], []

    def write(folder):
        write_marker(folder)
        barrier.wait(timeout=60)  # all publish and prune at once

    def export():
        try:
            path = versions.write_version(str(tmp_path), "m", write, keep_versions=1)
            written.append(int(os.path.basename(path)))
        except Exception as error:  # recorded, the test fails below
            errors.append(error)

    threads = [threading.Thread(target=export) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(written) == count
    assert versions.versions(str(tmp_path / "m"))[-1] == max(written)
    assert not [name for name in os.listdir(tmp_path / "m") if not name.isdigit()]


def test_concurrent_exporters_get_distinct_versions(tmp_path):
    def write_while_another_publishes(folder):
        write_marker(folder)
        # Another exporter publishes the version this one counted on.
        versions.write_version(str(tmp_path), "m", write_marker)

    path = versions.write_version(str(tmp_path), "m", write_while_another_publishes)
    assert path == str(tmp_path / "m" / "2")
    assert versions.versions(str(tmp_path / "m")) == [1, 2]


def test_a_stale_version_count_is_recounted_not_overwritten(tmp_path, monkeypatch):
    versions.write_version(str(tmp_path), "m", write_marker)
    real_next = versions.next_version
    counts = iter([1])  # as if counted before version 1 appeared
    monkeypatch.setattr(versions, "next_version", lambda base: next(counts, None) or real_next(base))
    path = versions.write_version(str(tmp_path), "m", write_marker)
    assert path == str(tmp_path / "m" / "2")
    assert (tmp_path / "m" / "1" / "saved_model.pb").read_text() == "complete"


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "white space", None])
def test_model_name_must_be_a_plain_folder_name(tmp_path, name):
    with pytest.raises(ValueError, match="model_name="):
        versions.write_version(str(tmp_path), name, write_marker)


def test_example_models_config_parses_and_points_at_model_folders():
    config = model_server_config_pb2.ModelServerConfig()
    with open(MODELS_CONFIG) as f:
        text_format.Parse(f.read(), config)
    models = config.model_config_list.config
    assert len(models) >= 2
    for model in models:
        versions.check_model_name(model.name)
        assert model.base_path == f"/models/{model.name}"  # <export_base>/<model_name>
        assert model.model_platform == "tensorflow"


@pytest.mark.parametrize("url", ["gs://bucket/models", "s3://bucket/models", "hdfs://nn/models"])
def test_export_base_must_be_a_folder_not_a_url(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="is a URL; export needs a local or mounted folder"):
        versions.write_version(url, "m", write_marker)
    assert not os.listdir(tmp_path)  # no folder named "gs:"


def test_readme_starts_the_server_so_that_the_configs_labels_load():
    """TF Serving refuses labels of versions not yet available, as at startup,
    unless told otherwise: the README's command must say so."""
    config = model_server_config_pb2.ModelServerConfig()
    with open(MODELS_CONFIG) as f:
        text_format.Parse(f.read(), config)
    assert any(model.version_labels for model in config.model_config_list.config)
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(readme) as f:
        commands = f.read().replace("\\\n", " ").splitlines()
    served = [line for line in commands if "--model_config_file=/models/models.config" in line]
    assert served and all(
        "--allow_version_labels_for_unavailable_models=true" in line for line in served)
