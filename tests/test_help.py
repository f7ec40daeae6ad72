"""--help and --helpshort of the binaries list their flags.

absl lists the key flags of sys.argv[0] only, and most flags are defined in
other modules (keras_resnet.trainers.flags): without
keras_resnet.arguments.list_flags_in_help, --help would list none of them.
"""

import os
import subprocess
import sys

import pytest

from cli_help import BINARIES, check_help

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("script", sorted(BINARIES))
def test_console_script_help_lists_its_flags(script):
    """As the console script runs it: sys.argv[0] is the script, not the module."""
    module, flags = BINARIES[script]
    code = (f"import sys; sys.argv[0] = {script!r}; "
            f"from {module} import run; sys.exit(run())")
    check_help(run_python("-c", code, "--help"), flags)


@pytest.mark.parametrize("option", ["--help", "--helpshort"])
def test_module_help_lists_the_trainer_flags(option):
    module, flags = BINARIES["keras-resnet-train"]
    check_help(run_python("-m", module, option), flags)


def test_a_users_own_trainers_folder_does_not_shadow_the_binaries(tmp_path):
    """The trainers and the exporter live under keras_resnet: a project with
    its own trainers/ and savedmodels/ packages still runs them from its root."""
    for name in ("trainers", "savedmodels"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f'raise ImportError("a user {name}")\n')
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    for script in ("keras-resnet-train", "keras-resnet-export"):
        module, flags = BINARIES[script]
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        check_help(proc, flags)
