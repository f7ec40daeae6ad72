"""TF Serving's model folder: `<export_base>/<model_name>/<version>/`.

The server watches `<export_base>/<model_name>` and loads the folders whose
names are integers, the highest by default. A version is written into a
hidden, non-integer folder beside it and renamed into place in one step, and
an old version is renamed out of sight before it is deleted, so the server
(or any reader) never sees a version that is half written or half removed.
Pruning removes only versions older than the one just written.
A writer killed midway leaves only a `.tmp-*` folder, which the server
ignores.
"""

import errno
import os
import re
import shutil
import uuid

_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TMP_PREFIX = ".tmp-"


def check_model_name(model_name):
    if not isinstance(model_name, str) or not _MODEL_NAME_RE.match(model_name):
        raise ValueError(
            f"model_name={model_name!r} must be a folder name of letters, digits, "
            "'.', '_' and '-' (TF Serving's model name)"
        )
    return model_name


def versions(model_base):
    """The integer versions under a model's folder, oldest first."""
    if not os.path.isdir(model_base):
        return []
    return sorted(
        int(name)
        for name in os.listdir(model_base)
        if name.isdigit() and os.path.isdir(os.path.join(model_base, name))
    )


def next_version(model_base):
    found = versions(model_base)
    return found[-1] + 1 if found else 1


def _hidden_folder(model_base, purpose):
    return os.path.join(model_base, f"{TMP_PREFIX}{purpose}-{uuid.uuid4().hex}")


def _check_free(model_base, version):
    if os.path.exists(os.path.join(model_base, str(version))):
        raise ValueError(
            f"version={version} already exists under {model_base}; pick another "
            "or leave it unset for the next free version"
        )


def _publish(tmp, model_base, version):
    """Renames `tmp` to the given or the next free version; returns that version."""
    while True:
        target = next_version(model_base) if version is None else version
        final = os.path.join(model_base, str(target))
        # rename() would replace an empty folder: check that none is there.
        if version is not None:
            _check_free(model_base, version)
        elif os.path.exists(final):
            continue
        try:
            os.rename(tmp, final)
            return target
        except OSError as error:
            # Another exporter took `target` between the check and the rename.
            if version is not None or error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise


def prune(model_base, keep, written):
    """Keeps `written` and the keep - 1 versions just below it; removes older ones.

    Versions above `written` are never touched: they are another exporter's
    newer work, or versions being served next to an explicit older
    --version. Two exporters pruning at once may both pick a version; the
    one that does not get to rename it lets it go.
    """
    if keep < 1:
        raise ValueError(f"keep_versions={keep} must be >= 1")
    older = [v for v in versions(model_base) if v < written]
    removed = []
    for version in older[: max(0, len(older) - (keep - 1))]:
        hidden = _hidden_folder(model_base, f"prune-{version}")
        try:
            os.rename(os.path.join(model_base, str(version)), hidden)
        except FileNotFoundError:
            continue  # another exporter pruned it first
        shutil.rmtree(hidden)
        removed.append(version)
    return removed


def check_export_base(export_base):
    """A local (or mounted) folder: publication is an atomic folder rename,
    which object stores (gs://, s3://) do not have."""
    if not isinstance(export_base, str) or not export_base:
        raise ValueError(f"export_base={export_base!r} must be a folder")
    if "://" in export_base:
        raise ValueError(
            f"--export_base={export_base!r} is a URL; export needs a local or mounted "
            "folder, since a version is published by an atomic folder rename, which "
            "object stores do not have. Export to a local folder and copy the version "
            "folder to the bucket (where TF Serving reads it) when it is complete"
        )
    return export_base


def write_version(export_base, model_name, write, version=None, keep_versions=None):
    """Calls write(folder) on a hidden folder, then makes it a version.

    `version`: an integer that must be free, or None for the next free one
    (counted at the rename, so concurrent exporters get distinct versions).
    `keep_versions`: None keeps every version; N keeps the new one and the
    N - 1 versions just below it, and never a version above it (`prune`).
    Returns the path of the new version.
    """
    model_base = os.path.join(check_export_base(export_base), check_model_name(model_name))
    if version is not None:
        version = int(version)
        if version < 1:
            raise ValueError(f"version={version} must be >= 1")
        _check_free(model_base, version)
    if keep_versions is not None and keep_versions < 1:
        raise ValueError(f"keep_versions={keep_versions} must be >= 1")
    created = not os.path.isdir(model_base)
    os.makedirs(model_base, exist_ok=True)
    tmp = _hidden_folder(model_base, "export")
    os.mkdir(tmp)  # unlike mkdtemp, honours the umask: servers run as other users
    try:
        write(tmp)
        version = _publish(tmp, model_base, version)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
            if created and not os.listdir(model_base):
                os.rmdir(model_base)
    if keep_versions is not None:
        prune(model_base, keep_versions, written=version)
    return os.path.join(model_base, str(version))
