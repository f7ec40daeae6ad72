"""The optional parts of the package, each installed by a pip extra."""

import importlib.util


def require(part, extra, modules):
    """Raises an ImportError that names the extra to install when any of
    `modules` is missing: clearer than "No module named 'tensorflow'" from
    deep inside `part`."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{part} needs {', '.join(missing)}: "
            f'pip install "keras-resnet-zoo[{extra}]"')
