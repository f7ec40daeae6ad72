"""The search space of `tune`: one flag per hyperparameter, each fixing a
value or listing what to search, turned into keras_tuner HyperParameters.

Every hyperparameter is named after the `trainers.loop.Run` field (and the
`train` flag) it sets, so a trial's values drop straight into a Run and the
best ones read as `keras-resnet-train` flags.
"""

import dataclasses

import keras_tuner
from absl import app, flags

from keras_resnet import is_cifar_model, list_models
from keras_resnet.blocks import SHORTCUTS, VARIANTS

# CIFAR ResNets 6n+2 deep (paper section 4.2): depth -> n.
CIFAR_DEPTHS = {int(m[len("resnet"):]): (int(m[len("resnet"):]) - 2) // 6
                for m in list_models() if m.startswith("resnet") and is_cifar_model(m)}


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One hyperparameter: `name` is a Run field, `flag` the flag that set it.

    kind "log": values are (low, high), sampled log-uniformly; "choice":
    values are the choices. One value: fixed, not searched."""

    name: str
    flag: str
    kind: str
    values: tuple

    @property
    def searched(self):
        return len(self.values) > 1

    def spec(self):
        if self.kind == "log" and self.searched:
            return f"log-uniform in [{self.values[0]:g}, {self.values[1]:g}]"
        return "{" + ", ".join(str(v) for v in self.values) + "}"


# With no search flag at all, tune searches these, as keras-tuner's HyperResNet
# comes with its own space: the learning rate and weight decay around the
# paper's 0.1 and 1e-4, the paper's three shortcut options and, for CIFAR
# nets, the depths of its Table 6 up to 56. A trainer flag given (say
# --shortcut=A) fixes its hyperparameter instead.
DEFAULT_SPACE = {
    "lr_range": ["0.02", "0.5"],
    "weight_decay_range": ["1e-5", "1e-3"],
    "shortcuts": ["A", "B", "C"],
    "depths": ["20", "32", "44", "56"],  # CIFAR nets only
}


def define_search_flags():
    flags.DEFINE_list("lr_range", None,
                      "low,high: search --base_learning_rate log-uniformly between them; "
                      "one value fixes it (default: --base_learning_rate; with no search "
                      f"flag at all, {','.join(DEFAULT_SPACE['lr_range'])}).")
    flags.DEFINE_list("weight_decay_range", None,
                      "low,high: search --weight_decay log-uniformly between them; one "
                      "value fixes it (default: --weight_decay; with no search flag at all, "
                      f"{','.join(DEFAULT_SPACE['weight_decay_range'])}).")
    flags.DEFINE_list("depths", None,
                      "CIFAR ResNet depths 6n+2 to choose from, each training resnet<depth>: "
                      + ", ".join(f"{d} (n={n})" for d, n in sorted(CIFAR_DEPTHS.items()))
                      + " (default: --model; with no search flag at all and a CIFAR "
                      f"--model, {','.join(DEFAULT_SPACE['depths'])}).")
    flags.DEFINE_list("shortcuts", None,
                      f"Shortcut options to choose from, of {','.join(SHORTCUTS)} "
                      "(default: --shortcut; with no search flag at all, "
                      f"{','.join(DEFAULT_SPACE['shortcuts'])}).")
    flags.DEFINE_list("variants", None,
                      f"ResNet variants to choose from, of {','.join(VARIANTS)} "
                      "(default: --variant).")
    flags.DEFINE_list("batch_sizes", None,
                      "Global batch sizes to choose from (default: --batch_size). The "
                      "learning rate scales linearly with the batch size.")
    flags.DEFINE_list("label_smoothings", None,
                      "Label smoothings in [0, 1) to choose from (default: --label_smoothing).")
    flags.DEFINE_list("warmups", None,
                      "Warm-up epochs to choose from (default: --warmup_epochs).")


def _positive(v):
    return None if v > 0 else "must be > 0"


def _smoothing(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _depth(v):
    if v in CIFAR_DEPTHS:
        return None
    return ("is not a CIFAR ResNet depth; choose from "
            + ", ".join(str(d) for d in sorted(CIFAR_DEPTHS)))


def _one_of(allowed):
    def check(v):
        return None if v in allowed else f"is unknown; choose from {', '.join(allowed)}"
    return check


# search flag -> (Run field, kind, parse a value, check a value (a problem or
# None), the train flag it replaces)
FLAGS_TO_FIELDS = {
    "lr_range": ("base_learning_rate", "log", float, _positive, "base_learning_rate"),
    "weight_decay_range": ("weight_decay", "log", float, _non_negative, "weight_decay"),
    "depths": ("model", "choice", int, _depth, "model"),
    "shortcuts": ("shortcut", "choice", str.upper, _one_of(SHORTCUTS), "shortcut"),
    "variants": ("variant", "choice", str, _one_of(VARIANTS), "variant"),
    "batch_sizes": ("batch_size", "choice", int, _positive, "batch_size"),
    "label_smoothings": ("label_smoothing", "choice", float, _smoothing, "label_smoothing"),
    "warmups": ("warmup_epochs", "choice", float, _non_negative, "warmup_epochs"),
}


def _parse_flag(flag, raw):
    field, kind, parse, check, trainer_flag = FLAGS_TO_FIELDS[flag]
    shown = f"--{flag}={','.join(raw)}"
    if not raw:
        raise app.UsageError(f"--{flag} is empty: list at least one value")
    values = []
    for text in raw:
        try:
            value = parse(text.strip())
        except ValueError:
            kind_name = "an integer" if parse is int else "a number"
            raise app.UsageError(f"{shown}: {text.strip()!r} is not {kind_name}") from None
        problem = check(value)
        if problem:
            raise app.UsageError(f"{shown}: {text.strip()!r} {problem}")
        if value not in values:
            values.append(value)
    if kind == "log":
        if len(values) > 2:
            raise app.UsageError(f"{shown}: give low,high (a log-scale range) or one value")
        if len(values) == 2:
            low, high = values
            if low >= high:
                raise app.UsageError(f"{shown}: low must be < high")
            if low <= 0:
                raise app.UsageError(f"{shown}: a log-scale range needs low > 0")
    if field == "model":
        values = [f"resnet{d}" for d in values]
    return Dimension(field, flag, kind, tuple(values))


@dataclasses.dataclass(frozen=True)
class Space:
    """All dimensions the flags set: searched ones and fixed ones.
    `default`: no search flag was given, so these are DEFAULT_SPACE's."""

    dimensions: tuple
    default: bool = False

    @property
    def searched(self):
        return [d for d in self.dimensions if d.searched]

    @property
    def fixed(self):
        """Run fields a search flag fixed to one value."""
        return {d.name: d.values[0] for d in self.dimensions if not d.searched}

    @property
    def names(self):
        return [d.name for d in self.searched]

    def hyperparameters(self):
        """The keras_tuner search space of the searched dimensions."""
        hp = keras_tuner.HyperParameters()
        for d in self.searched:
            if d.kind == "log":
                hp.Float(d.name, min_value=d.values[0], max_value=d.values[1], sampling="log")
            else:
                hp.Choice(d.name, list(d.values))
        return hp

    def config(self):
        """What defines the space, for refusing to resume another search."""
        return {d.name: {"kind": d.kind, "values": list(d.values)} for d in self.dimensions}

    def describe(self):
        return "; ".join(f"{d.name} {d.spec()}" for d in self.searched)


def _default_flags(flag_values):
    """DEFAULT_SPACE less what a trainer flag fixes (and depths for a
    non-CIFAR --model)."""
    chosen = {}
    for flag, raw in DEFAULT_SPACE.items():
        trainer_flag = FLAGS_TO_FIELDS[flag][4]
        if flag_values[trainer_flag].present:
            continue
        if flag == "depths" and not is_cifar_model(flag_values["model"].value):
            continue
        chosen[flag] = raw
    return chosen


def from_flags(flag_values):
    """The Space of the search flags, or the default space when none is
    given; app.UsageError names a bad flag."""
    given = {flag: flag_values[flag].value for flag in FLAGS_TO_FIELDS
             if flag_values[flag].value is not None}
    dimensions = []
    for flag, raw in (given or _default_flags(flag_values)).items():
        field, _, _, _, trainer_flag = FLAGS_TO_FIELDS[flag]
        if flag_values[trainer_flag].present:
            raise app.UsageError(
                f"--{flag} and --{trainer_flag} both set {field}: give one of them")
        dimensions.append(_parse_flag(flag, raw))
    space = Space(tuple(dimensions), default=not given)
    if not space.searched:
        raise app.UsageError(
            "The search space is empty: every hyperparameter is fixed (by a trainer flag "
            "or a search flag of one value). Give a low,high range or several choices to "
            "at least one of " + ", ".join(f"--{f}" for f in FLAGS_TO_FIELDS))
    return space


def run_values(values):
    """Run fields of a trial's hyperparameter values (without tuner/* entries)."""
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def trainer_flags(run):
    """The `train` flags of every searchable field of `run`."""
    out = []
    for name in ("model", "shortcut", "variant", "batch_size", "base_learning_rate",
                 "weight_decay", "label_smoothing", "warmup_epochs"):
        value = getattr(run, name)
        if value is not None:
            out.append(f"--{name}={value}")
    return out
