"""Large frames decoded and encoded in other processes, off the reactor's GIL.

pylibjpeg-openjpeg, pyjpegls and pylibjpeg-libjpeg keep the GIL for the
whole of their C call: a 4096 x 4096 mammogram decoded or encoded in a
worker thread stopped the reactor (every association, the web, HL7) for
seconds.  ``install()`` wraps each plugin function of pydicom's decoders
and encoders of the encapsulated transfer syntaxes, the call that codes
one frame (``function(src, runner)``), through which every conversion of
pacs goes (storing with a compression code, C-MOVE, C-GET and forwards
with a conversion, WADO): a frame of ``LARGE_FRAME`` samples or more is
coded by the same plugin function in a process of ``CodecProcesses``,
given a runner with the same options; the options it changes there (the
decoded frame's Bits Allocated, Planar Configuration ...) are set on the
caller's runner and what it raises is raised again in the caller, so that
pydicom goes on (or tries its next plugin) as after a call in the thread.
Smaller frames are coded in the calling thread: a round trip to a process
costs more than they hold the GIL.

``CodecProcesses`` is a ``ProcessPoolExecutor`` of 'forkserver' processes
(one per CPU), started at the first large frame and shut down with the
server (``Archive.shutdown``); after that, a large frame (of a conversion
still under way as the server stops) is coded in the calling thread, never
in new processes.  The shutdown waits for the frames under way until the
server's stop deadline (``QuitGracePeriod``), then kills the processes
still coding (a codec call that never returns must not keep the server
from stopping), naming their frames in a warning.  A process that dies (the kernel's OOM
killer, a crash in a codec) breaks the whole pool: every frame under way
in it is coded again, once, in new processes (a warning each), since the
process that died may have been another frame's; a frame whose second
try breaks its pool too fails that plugin call with ``CodecProcessEnded``,
logged, after which pydicom tries its next plugin if it has one, else the
conversion fails as with any codec failure.  Each process ends
when the server does, killed (``kill -9``, the OOM killer) or crashed
included: a thread of it waits for the server's end (a pidfd), so that
neither the processes nor their forkserver and resource tracker outlive it.
The shutdown also stops the forkserver and removes the temporary folder
(``/tmp/pymp-...``) multiprocessing made for its socket: multiprocessing
removes it only in an ``atexit`` handler, which does not run when twistd
ends a server stopped by a signal (SIGTERM, ``systemctl stop``) by that
signal again, so each such stop left one folder behind.
"""

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import select
import threading
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait

from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import AllTransferSyntaxes, UID
from twisted.logger import Logger

LARGE_FRAME = 1 << 20  # samples of a frame coded in a process (1024 x 1024 grey); smaller ones in the thread


class CodecProcessEnded(Exception):
    """The process coding a frame ended before it answered."""


class CodecProcesses:
    """Processes that run ``run(what, function, *args)`` calls (picklable,
    by reference); ``size`` of them (the number of CPUs), started when first
    needed, until ``shutdown()``; then in the calling thread."""

    log = Logger()

    def __init__(self, size=None):
        self.size = size or os.cpu_count() or 1
        self._executor = None
        self._closed = False  # shut down: no more processes
        self._unstartable = False  # the processes could not start: no more tries
        self._lock = threading.Lock()  # worker threads start and replace the executor
        self._underWay = []  # the ``what`` of the calls in the processes
        self._forkserverUsed = False  # an executor was made: shutdown() stops the forkserver

    def run(self, what, function, *args):
        """``function(*args)`` in one of the processes, from a thread that
        may wait (never the reactor's); what it raises is raised here, and
        ``CodecProcessEnded`` (logged, saying ``what`` was under way) when
        the process died meanwhile.  After ``shutdown()``, or when the
        processes could not start, in this thread."""
        for again in (False, True):
            executor = self._started()
            if executor is None:
                return function(*args)
            try:
                return self._runIn(executor, what, function, args)
            except BrokenProcessPool as e:
                if self._closed:  # killed by shutdown(), which said so
                    raise CodecProcessEnded("the server stopped before the process coding the frame answered") \
                        from None
                with self._lock:
                    if self._executor is executor:
                        self._executor = None
                executor.shutdown(wait=False)
                if again:
                    self.log.error("a codec process ended again while {what} ({error}): this call of the plugin "
                                   "fails (pydicom tries its next plugin for the frame, if there is one)",
                                   what=what, error=e)
                    raise CodecProcessEnded(f"the process coding the frame ended before it answered ({e})") \
                        from None
                self.log.warn("a codec process ended while {what} ({error}): that process may have been coding "
                              "another frame; this one is coded again in new processes", what=what, error=e)

    def _runIn(self, executor, what, function, args):
        """``function(*args)`` in ``executor``'s processes; in this thread
        when they cannot start or were shut down meanwhile."""
        self._underWay.append(what)
        try:
            try:
                future = executor.submit(function, *args)  # which starts the processes
            except OSError as e:
                self._cannotStart(e, executor)
                return function(*args)
            except RuntimeError as e:
                if isinstance(e, BrokenProcessPool) or not self._closed:
                    raise
                return function(*args)  # shut down since: coded here
            try:
                return future.result()
            except CancelledError:  # still waiting for a process at the shutdown
                if not self._closed:
                    raise
                return function(*args)
        finally:
            self._underWay.remove(what)

    def _started(self):
        """The executor, made when first needed; None after ``shutdown()`` or
        once the processes could not start."""
        with self._lock:
            if self._closed or self._unstartable or self._executor is not None:
                return self._executor
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            try:
                self._forkserverUsed = True
                self._executor = ProcessPoolExecutor(self.size, mp_context=context, initializer=_endWithServer,
                                                     initargs=(os.getpid(),))
                return self._executor
            except OSError as e:  # its queues' semaphores
                error = e
        self._cannotStart(error)
        return None

    def _cannotStart(self, error, executor=None):
        """The processes could not start (``error``; ``executor`` the one
        that tried): large frames are coded in their threads from now on."""
        with self._lock:
            first = not self._unstartable
            self._unstartable = True
            if self._executor is executor:
                self._executor = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if first:
            self.log.warn("the codec processes cannot start ({error}): large frames are coded in the conversions' "
                          "threads from now on, which holds every association, the web and HL7 meanwhile",
                          error=error)

    def shutdown(self, timeout=5):
        """Stop the processes once the calls under way ended, killing those
        still coding after ``timeout`` seconds (their calls then raise
        ``CodecProcessEnded``), then their forkserver, removing the folder
        of its socket; a later ``run`` codes in its thread.  Blocks: run it
        in a thread."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            self._end(executor, timeout)
        if self._forkserverUsed:
            self._stopForkserver()

    def _end(self, executor, timeout):
        """End ``executor``'s processes, those still coding after
        ``timeout`` seconds killed."""
        processes = executor._processes  # concurrent.futures has no public way to end a hung call
        executor.shutdown(wait=False, cancel_futures=True)
        left = {process.sentinel: process for process in list(processes.values())}
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for ended in wait(list(left), deadline - time.monotonic()):
                del left[ended]
        if self._underWay:
            self.log.warn("stopping: the codec processes still coding at the end of the stop's grace period are "
                          "killed, these frames not coded: {frames}", frames="; ".join(self._underWay))
        for process in left.values():
            process.kill()
        wait(list(left), 1)

    def _stopForkserver(self):
        """Stop multiprocessing's forkserver (of this process, which the
        processes of every ``CodecProcesses`` share: the server has one) and
        remove the temporary folder multiprocessing made for its socket,
        with multiprocessing's own clean-up of it, run early: its exit
        handler does not run when the server ends by a signal."""
        forkserver = multiprocessing.forkserver._forkserver  # no public way to stop it or to clean up before the exit
        address = forkserver._forkserver_address
        try:
            forkserver._stop()
        except OSError as e:  # its socket removed by someone else, say
            self.log.warn("stopping: the codec processes' forkserver did not stop cleanly ({error})", error=e)
        if not address or multiprocessing.util.is_abstract_socket_namespace(address):
            return
        folder = os.path.dirname(address)
        for finalizer in list(multiprocessing.util._finalizer_registry.values()):
            if finalizer._callback is multiprocessing.util._remove_temp_dir and finalizer._args[1] == folder:
                try:
                    finalizer()
                except OSError as e:
                    self.log.warn("stopping: the codec processes' temporary folder {folder} could not be removed "
                                  "({error})", folder=folder, error=e)


PROCESSES = CodecProcesses()


class _InProcessWhenLarge:
    """A pydicom plugin's frame function whose large frames are coded in
    ``processes``."""

    def __init__(self, function, label, processes):
        self.function = function
        self.label = label
        self.processes = processes

    def __call__(self, src, runner):
        rows, columns = runner.get_option("rows", 0), runner.get_option("columns", 0)
        if rows * columns * runner.get_option("samples_per_pixel", 1) < LARGE_FRAME:
            return self.function(src, runner)
        what = f"coding a frame of {rows} x {columns} pixels in {runner.transfer_syntax.name} with {self.label}"
        frame, options = self.processes.run(what, codeFrame, self.function, type(runner), runner.transfer_syntax,
                                            dict(runner.options), bytes(src) if isinstance(src, memoryview) else src)
        runner.set_options(**options)
        return frame


def _endWithServer(pid):
    """In a codec process, as it starts: end it when process ``pid`` (the
    server) ends."""
    threading.Thread(target=_exitAfter, args=(pid,), name="end-with-server", daemon=True).start()


def _exitAfter(pid):
    try:
        ended = os.pidfd_open(pid)
    except ProcessLookupError:  # already gone
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (not Linux, or a kernel before 5.3): asked each second
        while _alive(pid):
            time.sleep(1)
        os._exit(1)
    select.select([ended], [], [])
    os._exit(1)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def codeFrame(function, runnerType, syntax, options, src):
    """In a codec process: ``function(src, runner)`` with a new
    ``runnerType`` runner of ``syntax`` set to ``options``; the frame and
    the runner's options after it."""
    runner = runnerType(syntax)
    runner.set_options(**options)
    return function(src, runner), runner.options


def _coders():
    """The decoders and encoders pydicom has for the encapsulated transfer
    syntaxes."""
    for syntax in map(UID, AllTransferSyntaxes):
        if not syntax.is_encapsulated:
            continue
        for find in (get_decoder, get_encoder):
            try:
                yield find(syntax)
            except NotImplementedError:  # none for this syntax
                pass


def install(processes=PROCESSES):
    """Wrap the plugin functions of pydicom's decoders and encoders of the
    encapsulated syntaxes so that large frames are coded in ``processes``;
    once (a second call changes nothing)."""
    for coder in _coders():
        # pydicom offers no public way to wrap a plugin: its table of them,
        # which add_plugin and remove_plugin change, holds the functions called.
        for label, function in list(coder._available.items()):
            if not isinstance(function, _InProcessWhenLarge):
                coder._available[label] = _InProcessWhenLarge(function, label, processes)
