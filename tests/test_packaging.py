"""The distributions as a user gets them: both pass `twine check --strict`,
the sdist carries a test suite that runs, and the wheel, installed in a
fresh virtual environment and run from outside the checkout, builds
ResNet-20 with its shipped weights, lists every binary's flags and exports.

Both dists are built with `python -m build` (an isolated build: the build
backend comes from the package index or pip's cache) from a copy of the
checkout. The wheel's venv sees this environment's site-packages through a
.pth file and the wheel is installed with --no-deps: installing TensorFlow
and the rest afresh takes minutes, so the dependencies themselves are
checked against the wheel's metadata instead of reinstalled.
"""

import email
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest
from packaging.requirements import Requirement

from cli_help import BINARIES, check_help
from keras_resnet.extras import require

# The real checkout, also under Bazel, whose runfiles link to it.
ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
NAME = "keras-resnet-zoo"
# What the suite needs beside the package (MANIFEST.in).
SUITE_FILES = ["pytest.ini", "README.md", "BENCHMARKS.md", "LICENSE", "BUILD", "WORKSPACE",
               ".bazelignore"]
SUITE_FOLDERS = ["tests", "benchmarks", "bazel", "examples", "keras_resnet"]
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                     "__pycache__", "*.pyc", ".pytest_cache", "bazel-*")
# Committed while a Table 6 net trains (benchmarks/table6_report.py); not for the sdist.
TRAINING_CHECKPOINT = re.compile(r"benchmarks/results/table6/[^/]+/checkpoints/")
TIMEOUT = 600


def run(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **kwargs.pop("env", {})}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          **kwargs)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


def files_under(root, folders):
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for top in folders
        for folder, _, names in os.walk(os.path.join(root, top))
        for name in names
        if "__pycache__" not in folder and not name.endswith(".pyc")
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A copy of the checkout without build outputs, virtual environments or VCS."""
    copy = tmp_path_factory.mktemp("source") / "keras_resnet"
    shutil.copytree(ROOT, copy, ignore=NOT_SOURCES)
    return copy


@pytest.fixture(scope="module")
def dists(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(source)])
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory):
    """A fresh venv holding the wheel, on top of this environment's packages."""
    folder = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(folder)])
    python = folder / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # Appended after the venv's own site-packages, without running this
    # environment's .pth files: its editable install of the checkout stays off.
    with open(os.path.join(purelib.stdout.strip(), "test_environment.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-index",
         str(dists[1])])
    return folder


def test_both_dists_pass_twine_check_strict(dists):
    proc = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)])
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_metadata_license_extras_and_package_data(dists):
    with zipfile.ZipFile(dists[1]) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(wheel.read(metadata))
    assert meta["Name"] == NAME and meta["License-Expression"] == "Apache-2.0"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert set(meta.get_all("Provides-Extra")) == {"train", "serve", "tune", "all", "test"}
    core = [Requirement(r) for r in meta.get_all("Requires-Dist")
            if "extra ==" not in r]
    assert sorted(r.name for r in core) == ["h5py", "keras", "numpy"]
    for data in ("keras_resnet/pretrained/resnet20_cifar10.weights.h5",
                 "keras_resnet/pretrained/cifar10_preprocessing.json",
                 "keras_resnet/savedmodels/models.config",
                 "keras_resnet/savedmodels/warmup_images/chelsea.jpg"):
        assert data in names, f"the wheel lacks {data}"


def test_this_environment_satisfies_the_wheels_test_extra(dists):
    """What the venv borrows from here is what the wheel asks for: `[test]`
    (and through it every extra), so the installed binaries run on the
    versions the metadata allows."""
    with zipfile.ZipFile(dists[1]) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        requirements = [Requirement(r) for r in email.message_from_bytes(
            wheel.read(metadata)).get_all("Requires-Dist")]
    unmet = []
    for requirement in requirements:
        if requirement.name == NAME:
            continue  # the extras that [test] pulls in are checked by name below
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{requirement} (installed: {version})")
    assert not unmet, "this environment does not satisfy: " + ", ".join(unmet)


def test_sdist_carries_a_test_suite_that_runs(dists, source, tmp_path):
    with tarfile.open(dists[0]) as sdist:
        sdist.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    shipped = set(files_under(unpacked, SUITE_FOLDERS))
    missing = [f for f in files_under(source, SUITE_FOLDERS) + SUITE_FILES
               if f not in shipped and not (unpacked / f).is_file()
               and not TRAINING_CHECKPOINT.match(f)]
    assert not missing, "MANIFEST.in leaves out: " + ", ".join(missing)
    checkpoints = [f for f in shipped if TRAINING_CHECKPOINT.match(f)]
    assert not checkpoints, "the sdist carries training checkpoints: " + ", ".join(checkpoints)
    # The suite's own check of the tree runs there as it does here.
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_build_targets.py"], cwd=unpacked)


def test_installed_wheel_builds_resnet20_with_its_weights(venv, tmp_path):
    code = ("import keras_resnet; "
            "model = keras_resnet.ResNet20(weights='cifar10'); "
            "print(keras_resnet.__file__); print(model.count_params())")
    proc = run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path)
    location, params = proc.stdout.split()
    assert location.startswith(str(venv)), f"imported {location}, not the wheel"
    assert int(params) > 200_000


@pytest.mark.parametrize("script", sorted(BINARIES))
def test_installed_console_script_help_lists_its_flags(venv, tmp_path, script):
    proc = subprocess.run([str(venv / "bin" / script), "--help"], cwd=tmp_path,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=TIMEOUT)
    check_help(proc, BINARIES[script][1])


def test_installed_exporter_exports_the_shipped_resnet20(venv, tmp_path):
    base = tmp_path / "models"
    proc = run([str(venv / "bin" / "keras-resnet-export"), "--model=resnet20",
                "--weights=cifar10", f"--export_base={base}"], cwd=tmp_path)
    exported = proc.stdout.strip().splitlines()[-1]
    assert exported.startswith(str(base))
    assert os.path.isfile(os.path.join(exported, "saved_model.pb"))


def test_a_missing_module_names_the_extra_that_installs_it():
    with pytest.raises(ImportError, match=r'no_such_module: pip install "keras-resnet-zoo\[serve\]"'):
        require("keras_resnet.savedmodels", "serve", ["json", "no_such_module"])
    require("keras_resnet.savedmodels", "serve", ["json"])


def test_training_with_export_dir_but_without_serve_stops_before_training(tmp_path):
    """`[train]` alone lacks tensorflow-serving-api, which --export_dir needs
    only after the last step: the binary says so before the first."""
    code = ("import sys; sys.modules['tensorflow_serving'] = None; "
            "sys.argv[0] = 'keras-resnet-train'; "
            "from keras_resnet.trainers.train import run; run()")
    proc = subprocess.run(
        [sys.executable, "-c", code, f"--model_dir={tmp_path / 'run'}",
         f"--export_dir={tmp_path / 'export'}", "--use_synthetic_data"],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
        text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert ('--export_dir: keras_resnet.savedmodels needs tensorflow_serving: '
            'pip install "keras-resnet-zoo[serve]"') in proc.stderr
    assert not (tmp_path / "run").exists()
