"""pytest_test: a py_test that runs tests/<name>.py under pytest."""

def pytest_test(name, deps = [], data = [], size = "large", **kwargs):
    """tests/<name>.py under pytest, with conftest.py, test helpers and pytest.ini.

    py_test alone would run the file as a script, which defines test
    functions and calls none of them. Size "large" (a 15-minute timeout):
    most files build deep nets or train on a shared 2-core machine.
    """
    src = "tests/%s.py" % name
    native.py_test(
        name = name,
        srcs = [src, "//bazel:pytest_main.py"],
        main = "//bazel:pytest_main.py",
        args = [src],
        deps = deps + ["//:test_support"],
        data = data + ["//:pytest.ini"],
        size = size,
        # Bazel would add tests/__init__.py to the runfiles, making tests/ a
        # package: pytest would then import conftest.py as tests.conftest,
        # and `from conftest import ...` in the test files would fail.
        legacy_create_init = False,
        **kwargs
    )
