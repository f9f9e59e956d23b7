"""Headless Chromium (Debian's ``chromium``) loading pages of a test
server: the DOM after the page's scripts and images have run."""

import shutil
import subprocess
import tempfile

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise FileNotFoundError("Chromium is not installed (apt-get install chromium)")
    return path


def renderedDOM(url, budget=5000):
    """The DOM of ``url`` once loaded (``budget`` ms of virtual time for
    images and scripts), as Chromium serialises it."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget}",
                                 "--dump-dom", url], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"chromium failed on {url} ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout
