"""pytest_test: a py_test that runs tests/<name>.py under pytest."""

def pytest_test(name, deps = [], data = [], **kwargs):
    """tests/<name>.py under pytest, with conftest.py, test helpers and pytest.ini.

    py_test alone would run the file as a script, which defines test
    functions and calls none of them.
    """
    src = "tests/%s.py" % name
    native.py_test(
        name = name,
        srcs = [src, "//bazel:pytest_main.py"],
        main = "//bazel:pytest_main.py",
        args = [src],
        deps = deps + ["//:test_support"],
        data = data + ["//:pytest.ini"],
        **kwargs
    )
