"""Headless Chromium (Debian's ``chromium``) loading pages of a test
server, or a page of another origin: the DOM after the page's scripts and
images have run."""

import os
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from tests.interop.server import freePort

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


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def renderedFromElsewhere(folder, name, html):
    """The DOM of the page ``html``, written to ``folder`` as ``name`` and
    served from there by another HTTP server (another origin than the test
    server's), once Chromium has loaded it."""
    with open(os.path.join(folder, name), "w") as f:
        f.write(html)
    server = ThreadingHTTPServer(("127.0.0.1", freePort()), partial(QuietHandler, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return renderedDOM(f"http://127.0.0.1:{server.server_address[1]}/{name}")
    finally:
        server.shutdown()
        server.server_close()
