"""Disk hygiene for the test run: what a passing test wrote is removed.

Interop tests store real objects (one of 300 MB), so a whole run writes
several GB.  Trial's ``TestCase.mktemp`` makes its folders under the current
folder (``<module>/<class>/<method>/...``) and never removes them, and
``tempfile`` folders stay in /tmp.  Here a test's ``mktemp`` folder goes as
soon as the test has passed (the emptied folders above it at the end), and the run's ``tempfile`` folders (kept in
one folder of the run, shared by pytest-xdist's workers) go when the whole
run has passed; what a failing test left stays for reading, and its place is
printed at the end.  The database servers a test process started
(tests/dbservers.py) are stopped at the end of its session.
"""

import glob
import multiprocessing.util
import os
import shutil
import tempfile

import pytest

from tests import dbservers

_MAX_FILENAME = 32  # as trial's TestCase.mktemp cuts its folder names


def pytest_configure(config):
    # multiprocessing's folder (the socket of the codec processes' forkserver)
    # is made outside the run's folder, which goes before multiprocessing
    # removes its folder at exit.
    multiprocessing.util.get_temp_dir()
    workerInput = getattr(config, "workerinput", None)
    if workerInput is None:
        config._pacsTempFolder = tempfile.mkdtemp(prefix="pacs-tests-")
    else:  # a pytest-xdist worker: the run's folder is the controller's
        config._pacsTempFolder = workerInput["pacsTempFolder"]
    tempfile.tempdir = config._pacsTempFolder


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput["pacsTempFolder"] = node.config._pacsTempFolder


def pytest_sessionfinish(session, exitstatus):
    dbservers.stopAll()
    folder = session.config._pacsTempFolder
    tempfile.tempdir = None
    if hasattr(session.config, "workerinput"):
        return  # the controller decides for the whole run
    _removeEmptyFolders(glob.glob("tests.*/"))
    if exitstatus == 0:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        session.config._pacsKept = folder


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    kept = getattr(config, "_pacsKept", None)
    if kept:
        terminalreporter.write_line(f"temporary folders of this run kept in {kept} and under tests.*/")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item._pacsFailed = True
    return report


def _mktempFolder(testCase):
    """Where trial's mktemp puts this test's folders."""
    cls = type(testCase)
    return os.path.join(cls.__module__[:_MAX_FILENAME], cls.__name__[:_MAX_FILENAME],
                        testCase._testMethodName[:_MAX_FILENAME])


@pytest.fixture(autouse=True)
def _removeTemporaryFolders(request):
    yield
    testCase = request.instance
    if testCase is None or not hasattr(testCase, "mktemp") or getattr(request.node, "_pacsFailed", False):
        return
    # Only the test's own folder: its class's and module's, left empty, go
    # at the end of the run (another worker may be making a folder in them).
    shutil.rmtree(_mktempFolder(testCase), ignore_errors=True)


def _removeEmptyFolders(tops):
    """Remove the folders under each of ``tops`` (and it) that hold no file."""
    for top in tops:
        for folder, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # it holds a failed test's files
