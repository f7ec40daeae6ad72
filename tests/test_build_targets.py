"""The Bazel BUILD files cover the repository.

Every module and test file is in some target's srcs, every runnable module
(`if __name__ == "__main__":`) has a py_binary, every tests/test_*.py a
py_test, every srcs entry exists, every dep names a target, every
first-party import is a declared (transitive) dep, and every data file of the
package is in its library's data, as Bazel's sandbox would demand at run
time.

BUILD and .bzl files are a Python-compatible subset of Starlark, so they are
evaluated here as Python with the few rules and functions they use; no Bazel
needed. (.ci/bazel runs the real `bazel test` where Bazel is installed.)
"""

import ast
import dataclasses
import fnmatch
import os
import pathlib
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("keras_resnet", "benchmarks")
FIRST_PARTY = CODE_FOLDERS
RULES = ("py_library", "py_binary", "py_test")


@dataclasses.dataclass
class Target:
    kind: str
    label: str
    srcs: list  # repository-relative paths
    deps: list  # absolute labels
    main: str  # repository-relative path, for binaries and tests
    data: list  # repository-relative paths of the files among them


class Workspace:
    """All targets of all BUILD files under `root`, outside .bazelignore."""

    def __init__(self, root):
        self.root = root
        self.targets = {}
        self.package = None
        ignored = {
            line.strip() for line in (root / ".bazelignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
        for folder, subfolders, files in os.walk(root):
            relative = pathlib.Path(folder).relative_to(root).as_posix()
            subfolders[:] = [
                d for d in subfolders
                if not d.startswith(".") and (pathlib.PurePosixPath(relative) / d).as_posix()
                not in ignored
            ]
            if "BUILD" in files:
                self._evaluate(pathlib.Path(folder) / "BUILD")

    # --- labels and files -----------------------------------------------------

    def _package_of(self, build):
        package = build.parent.relative_to(self.root).as_posix()
        return "" if package == "." else package

    def label(self, name):
        """An absolute label for `name` as written in the current package."""
        if name.startswith("//"):
            package, _, target = name[2:].partition(":")
            return f"//{package}:{target or package.rsplit('/', 1)[-1]}"
        return f"//{self.package}:{name.lstrip(':')}"

    def file(self, name):
        """The repository-relative path of a source file label."""
        label = self.label(name)
        package, _, path = label[2:].partition(":")
        return f"{package}/{path}" if package else path

    def _glob(self, include, exclude=(), **_):
        base = self.root / self.package
        found = set()
        for pattern in include:
            for path in base.glob(pattern):
                relative = path.relative_to(base).as_posix()
                in_subpackage = any(
                    (base / parent / "BUILD").exists()
                    for parent in pathlib.PurePosixPath(relative).parents
                    if str(parent) != "."
                )
                if path.is_file() and not in_subpackage and "__pycache__" not in relative:
                    found.add(relative)
        return sorted(p for p in found if not any(fnmatch.fnmatch(p, e) for e in exclude))

    # --- evaluation -----------------------------------------------------------

    def _rule(self, kind):
        def record(name, srcs=(), deps=(), main=None, data=(), **_):
            label = self.label(name)
            assert label not in self.targets, f"{label} is defined twice"
            srcs = [self.file(s) for s in srcs]
            if main is not None:
                main = self.file(main)
            elif kind != "py_library":
                matches = [s for s in srcs if s.rsplit("/", 1)[-1] == name + ".py"]
                main = matches[0] if matches else None
            files = [self.file(d) for d in data if (self.root / self.file(d)).is_file()]
            self.targets[label] = Target(kind, label, srcs, [self.label(d) for d in deps], main,
                                         files)

        return record

    def _native(self):
        ignore = lambda *args, **kwargs: None  # noqa: E731
        rules = {kind: self._rule(kind) for kind in RULES}
        return types.SimpleNamespace(
            glob=self._glob, package=ignore, exports_files=ignore, **rules
        )

    def _load(self, scope):
        def load(label, *symbols):
            path = self.root / self.file(label)
            module = {"native": self._native()}
            exec(compile(path.read_text(), str(path), "exec"), module)
            scope.update({symbol: module[symbol] for symbol in symbols})

        return load

    def _evaluate(self, build):
        self.package = self._package_of(build)
        native = self._native()
        scope = dict(vars(native))
        scope["load"] = self._load(scope)
        exec(compile(build.read_text(), str(build), "exec"), scope)

    # --- queries --------------------------------------------------------------

    def of_kind(self, *kinds):
        return [t for t in self.targets.values() if t.kind in kinds]

    def closure(self, target):
        """The target and everything it depends on."""
        seen, todo = {}, [target.label]
        while todo:
            label = todo.pop()
            if label not in seen and label in self.targets:
                seen[label] = self.targets[label]
                todo.extend(self.targets[label].deps)
        return seen.values()


@pytest.fixture(scope="module")
def workspace():
    return Workspace(ROOT)


def python_files(folder):
    return sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def is_runnable(path):
    """Whether the module has a top-level `if __name__ == "__main__":`."""
    tree = ast.parse((ROOT / path).read_text())
    return any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
        and "__name__" in ast.unparse(node.test)
        for node in tree.body
    )


def first_party_imports(path):
    """Modules of this repository that `path` imports (absolute imports only;
    test helpers such as tests/data_fixtures.py import by their bare name)."""
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in FIRST_PARTY or (ROOT / "tests" / f"{top}.py").is_file():
                yield name


def module_file(dotted):
    """The file that defines a dotted module name (or the closest package)."""
    parts = dotted.split(".")
    root = ROOT if parts[0] in FIRST_PARTY else ROOT / "tests"
    for n in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.relative_to(ROOT).as_posix()
    return None


def test_the_build_files_define_the_expected_rules(workspace):
    kinds = {t.kind for t in workspace.targets.values()}
    assert kinds == set(RULES)
    libraries = {t.label for t in workspace.of_kind("py_library")}
    assert {"//:keras_resnet", "//:trainers", "//:savedmodels"} <= libraries


def test_every_srcs_entry_exists(workspace):
    missing = [
        f"{t.label}: {src}" for t in workspace.targets.values() for src in t.srcs
        if not (ROOT / src).is_file()
    ]
    assert not missing, "srcs that do not exist: " + ", ".join(missing)


def test_every_dep_is_a_target(workspace):
    unknown = [f"{t.label} -> {d}" for t in workspace.targets.values() for d in t.deps
               if d not in workspace.targets]
    assert not unknown, "deps that are no target: " + ", ".join(unknown)


def test_every_module_and_test_file_is_in_a_target(workspace):
    covered = {src for t in workspace.targets.values() for src in t.srcs}
    modules = [p for folder in CODE_FOLDERS + ("tests",) for p in python_files(folder)]
    uncovered = [p for p in modules if p not in covered]
    assert not uncovered, "add these to a target's srcs in BUILD: " + ", ".join(uncovered)


def test_every_runnable_module_has_a_py_binary(workspace):
    binaries = {t.main for t in workspace.of_kind("py_binary")}
    runnable = [p for folder in CODE_FOLDERS for p in python_files(folder) if is_runnable(p)]
    assert runnable, "no runnable module found: the check itself is broken"
    missing = [p for p in runnable if p not in binaries]
    assert not missing, "add a py_binary to BUILD for: " + ", ".join(missing)
    not_runnable = [b for b in binaries if (ROOT / b).is_file() and b not in runnable]
    assert not not_runnable, "py_binary mains without a __main__ block: " + ", ".join(
        not_runnable)


def test_every_test_file_has_a_py_test(workspace):
    tested = {src for t in workspace.of_kind("py_test") for src in t.srcs}
    files = [p for p in python_files("tests") if p.rsplit("/", 1)[-1].startswith("test_")]
    missing = [p for p in files if p not in tested]
    assert not missing, "add a pytest_test to BUILD for: " + ", ".join(missing)


def test_first_party_imports_are_declared_deps(workspace):
    undeclared = []
    for target in workspace.targets.values():
        available = {src for t in workspace.closure(target) for src in t.srcs}
        for src in filter(lambda src: (ROOT / src).is_file(), target.srcs):
            for name in first_party_imports(src):
                needed = module_file(name)
                if needed is not None and needed not in available:
                    undeclared.append(f"{target.label} ({src} imports {name})")
    assert not undeclared, "add the library that holds these to deps: " + ", ".join(
        sorted(set(undeclared))
    )


def package_data():
    """{package folder: the files pyproject.toml ships as its package data}."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")
    with open(ROOT / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    return {
        package.replace(".", "/"): sorted(
            p.relative_to(ROOT).as_posix() for pattern in globs
            for p in (ROOT / package.replace(".", "/")).glob(pattern) if p.is_file())
        for package, globs in patterns.items()
    }


def test_every_data_file_of_the_package_ships_in_the_wheel():
    """The weights, models.config, the warm-up images: whatever the code reads
    besides modules must be package data, or an installed wheel lacks it."""
    shipped = {path for paths in package_data().values() for path in paths}
    assert shipped, "pyproject.toml ships no package data: the check itself is broken"
    data = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / "keras_resnet").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )
    missing = [p for p in data if p not in shipped]
    assert not missing, "add to [tool.setuptools.package-data] in pyproject.toml: " + ", ".join(
        missing)


def test_package_data_is_in_the_data_of_its_library(workspace):
    """Bazel's runfiles hold a library's data only: without it the code that
    reads the file fails under `bazel test` and `bazel run` alone."""
    missing = []
    for package, files in package_data().items():
        owners = [t for t in workspace.of_kind("py_library")
                  if f"{package}/__init__.py" in t.srcs]
        assert len(owners) == 1, f"{package}/__init__.py is in {len(owners)} libraries"
        missing += [f"{owners[0].label}: {f}" for f in files if f not in owners[0].data]
    assert not missing, "add to the library's data in BUILD: " + ", ".join(missing)
