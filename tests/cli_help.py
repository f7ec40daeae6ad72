"""What the binaries' --help must list, shared by test_help (the checkout)
and test_packaging (the installed wheel)."""

import re

# Console script -> (entry module, flags its --help must list).
BINARIES = {
    "keras-resnet-train": ("keras_resnet.trainers.train", [
        "model", "shortcut", "data_dir", "use_synthetic_data", "batch_size", "train_epochs",
        "lr_schedule", "distribution_strategy", "mixed_precision", "model_dir", "export_dir",
    ]),
    "keras-resnet-tune": ("keras_resnet.trainers.tune", [
        "tune_dir", "tuner", "max_trials", "lr_range", "depths", "model", "data_dir",
        "batch_size", "distribution_strategy",
    ]),
    "keras-resnet-prepare": ("keras_resnet.trainers.prepare", [
        "src", "out", "shards", "eval_shards", "skip_corrupt",
    ]),
    "keras-resnet-export": ("keras_resnet.savedmodels.export", [
        "model", "weights", "model_dir", "keras_file", "export_base", "version",
        "warmup_images",
    ]),
}


def listed_flags(help_text):
    """The flag names a help text describes (`--name:` or `--[no]name:`)."""
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+):", help_text, re.MULTILINE))


def check_help(proc, flags):
    # absl's convention, in every absl program: help, then exit status 1.
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Try --helpfull" in proc.stdout, proc.stderr[-2000:]
    listed = listed_flags(proc.stdout)
    missing = [flag for flag in flags if flag not in listed]
    assert not missing, f"--help does not list {missing}:\n{proc.stdout}"
    # Key flags only: absl's own (logging) flags stay in --helpfull.
    assert "logtostderr" not in listed
