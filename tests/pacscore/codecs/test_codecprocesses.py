"""Tests for pacscore.codecs.codecprocesses: large frames coded in another
process, with the same result, errors and runner options as in the thread."""

import multiprocessing.forkserver
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import JPEG2000Lossless
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.codecs import codecprocesses
from pacscore.codecs.codecprocesses import CodecProcessEnded, CodecProcesses, _InProcessWhenLarge
from pacscore.codecs.syntaxes import (EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS, JPEG_LS_LOSSLESS,
                                      RLE_LOSSLESS)
from pacscore.codecs.transcode import TranscodeError, transcode


# Plugin frame functions, found by the processes by their names.
def framePid(src, runner):
    runner.set_option("bits_allocated", 8)
    return os.getpid().to_bytes(8, "little")


def refusing(src, runner):
    raise ValueError(f"no frame in {len(src)} bytes")


def dying(src, runner):
    os._exit(3)


def coding(src, runner):
    """Coding for 10 s after writing the file ``src``; at once when it is
    there (coded again)."""
    if not os.path.exists(src):
        open(src, "w").close()
        time.sleep(10)
    return os.getpid().to_bytes(8, "little")


def dyingOnce(src, runner):
    if os.path.exists(src):
        os.remove(src)
        os._exit(3)
    return os.getpid().to_bytes(8, "little")


def slow(src, runner):
    """Coding for a second after writing its pid to the file ``src``."""
    with open(src, "w") as pid:
        pid.write(str(os.getpid()))
    time.sleep(1)
    return os.getpid().to_bytes(8, "little")


def hanging(src, runner):
    with open(src, "w") as pid:
        pid.write(str(os.getpid()))
    time.sleep(3600)


def ended(pid):
    """Whether process ``pid`` ended (a zombie counts: it runs no more)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def forkserverFolder():
    """The temporary folder (``/tmp/pymp-...``) of the socket of this
    process's forkserver."""
    return os.path.dirname(multiprocessing.forkserver._forkserver._forkserver_address)


def runnerOf(rows, columns):
    runner = DecodeRunner(JPEG2000Lossless)
    runner.set_options(rows=rows, columns=columns, samples_per_pixel=1, bits_allocated=16)
    return runner


def native(rows, columns, signed=False):
    """A 12-bit monochrome data set of ``rows`` x ``columns`` (explicit VR
    little endian bytes) with texture enough for a codec to work on; a
    signed 16-bit one when ``signed``."""
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    y, x = np.mgrid[0:rows, 0:columns]
    texture = x * 7 + y * 3 + (x * y) % 97
    if signed:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = (texture * 13 % 65536 - 32768).astype("<i2").tobytes()
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (texture % 4096).astype("<u2").tobytes()
    return written(ds)


def written(ds):
    fileobj = DicomBytesIO()
    fileobj.is_implicit_VR, fileobj.is_little_endian = False, True
    write_dataset(fileobj, ds)
    return fileobj.getvalue()


class CodecProcessesTests(unittest.TestCase):

    def setUp(self):
        self.processes = CodecProcesses(1)
        self.addCleanup(self.processes.shutdown)

    def convertingInTheTestsProcesses(self):
        """The conversions (pydicom's wrapped plugins) code their large
        frames in ``self.processes`` for the test, not in the server's."""
        for coder in codecprocesses._coders():
            for wrapper in coder._available.values():
                self.patch(wrapper, "processes", self.processes)

    def test_aLargeFrameIsCodedInAnotherProcess(self):
        runner = runnerOf(1024, 1024)
        pid = int.from_bytes(_InProcessWhenLarge(framePid, "test", self.processes)(b"frame", runner), "little")
        self.assertNotEqual(pid, os.getpid())
        self.assertEqual(runner.get_option("bits_allocated"), 8)  # as the function set it there

    def test_aSmallFrameIsCodedInTheThread(self):
        runner = runnerOf(1023, 1024)
        pid = int.from_bytes(_InProcessWhenLarge(framePid, "test", self.processes)(b"frame", runner), "little")
        self.assertEqual(pid, os.getpid())
        self.assertIsNone(self.processes._executor)  # never started

    def test_whatTheCodecRaisesIsRaisedInTheCaller(self):
        with self.assertRaisesRegex(ValueError, "^no frame in 5 bytes$"):
            _InProcessWhenLarge(refusing, "test", self.processes)(b"frame", runnerOf(2048, 2048))

    def test_aFrameWhoseProcessDiesTwiceFailsThatPluginCall(self):
        with capturedLogs() as events:
            with self.assertRaises(CodecProcessEnded):
                _InProcessWhenLarge(dying, "dying", self.processes)(b"frame", runnerOf(2048, 2048))
        logged = "".join(map(formatEvent, events))
        self.assertIn("a codec process ended while coding a frame of 2048 x 2048 pixels in JPEG 2000 Image Compression "
                      "(Lossless Only) with dying (", logged)
        self.assertIn("): that process may have been coding another frame; this one is coded again in new processes",
                      logged)
        self.assertIn("a codec process ended again while coding a frame of 2048 x 2048 pixels in JPEG 2000 Image "
                      "Compression (Lossless Only) with dying (", logged)
        self.assertIn("): this call of the plugin fails (pydicom tries its next plugin for the frame, if there is one)",
                      logged)
        pid = int.from_bytes(_InProcessWhenLarge(framePid, "test", self.processes)(b"frame", runnerOf(2048, 2048)), "little")
        self.assertNotEqual(pid, os.getpid())  # new processes

    def test_afterShutdownALargeFrameIsCodedInTheThread(self):
        """A conversion still under way as the server stops codes its next
        large frames in its thread: no new processes are started."""
        coded = _InProcessWhenLarge(framePid, "test", self.processes)
        self.assertNotEqual(int.from_bytes(coded(b"frame", runnerOf(2048, 2048)), "little"), os.getpid())
        self.processes.shutdown()
        self.assertEqual(int.from_bytes(coded(b"frame", runnerOf(2048, 2048)), "little"), os.getpid())
        self.assertIsNone(self.processes._executor)

    def test_theShutdownRemovesTheForkserversTemporaryFolder(self):
        """multiprocessing removes its /tmp/pymp-... folder (the forkserver's
        socket) only at a normal exit, not when twistd ends by a stop
        signal: the shutdown removes it, and codec processes started later
        (another instance) make a new one."""
        coded = _InProcessWhenLarge(framePid, "test", self.processes)
        coded(b"frame", runnerOf(2048, 2048))
        folder = forkserverFolder()
        self.assertTrue(os.path.isdir(folder))
        self.processes.shutdown()
        self.assertFalse(os.path.exists(folder))
        later = CodecProcesses(1)
        self.addCleanup(later.shutdown)
        pid = int.from_bytes(_InProcessWhenLarge(framePid, "test", later)(b"frame", runnerOf(2048, 2048)), "little")
        self.assertNotEqual(pid, os.getpid())
        laterFolder = forkserverFolder()
        self.assertNotEqual(laterFolder, folder)
        later.shutdown()
        self.assertFalse(os.path.exists(laterFolder))

    def test_aFrameUnderWayWhenAnotherFramesProcessDiesIsCodedAgain(self):
        """A process that dies breaks the whole pool: the frames under way
        in the others are coded again in new processes, not failed."""
        processes = CodecProcesses(2)
        self.addCleanup(processes.shutdown)
        # both processes started (two calls at once): concurrent.futures
        # notices a process's death in the next call or answer only, when that
        # process started as it was waiting
        list(processes._started().map(time.sleep, [0.3, 0.3]))
        started, marker = self.mktemp(), self.mktemp()
        open(marker, "w").close()  # dyingOnce's process dies as it removes it
        answers = []
        thread = threading.Thread(target=lambda: answers.append(
            _InProcessWhenLarge(coding, "coding", processes)(started, runnerOf(2048, 2048))), daemon=True)
        with capturedLogs() as events:
            thread.start()
            while not os.path.exists(started):
                time.sleep(0.02)
            _InProcessWhenLarge(dyingOnce, "dyingOnce", processes)(marker, runnerOf(2048, 2048))
            thread.join(10)
        self.assertEqual(len(answers), 1)
        logged = "\n".join(map(formatEvent, events))
        self.assertIn("with coding (", logged)
        self.assertIn("with dyingOnce (", logged)
        self.assertNotIn("again while", logged)

    def test_aHungCallIsKilledAtTheShutdownsTimeout(self):
        """A codec call that never returns keeps the server from stopping
        for ``timeout`` seconds only: its process is killed, the frame named."""
        pidFile = self.mktemp()
        failures = []

        def convert():
            try:
                _InProcessWhenLarge(hanging, "hanging", self.processes)(pidFile, runnerOf(2048, 2048))
            except CodecProcessEnded as e:
                failures.append(e)
        thread = threading.Thread(target=convert, daemon=True)
        thread.start()
        while not os.path.exists(pidFile) or not open(pidFile).read():
            time.sleep(0.02)
        pid = int(open(pidFile).read())
        folder = forkserverFolder()
        start = time.monotonic()
        with capturedLogs() as events:
            self.processes.shutdown(0.5)
        self.assertLess(time.monotonic() - start, 2)
        thread.join(5)
        self.assertTrue(ended(pid))
        self.assertFalse(os.path.exists(folder))
        self.assertEqual(len(failures), 1)
        self.assertIn("stopping: the codec processes still coding at the end of the stop's grace period are killed, "
                      "these frames not coded: "
                      "coding a frame of 2048 x 2048 pixels in JPEG 2000 Image Compression (Lossless Only) with "
                      "hanging", "".join(map(formatEvent, events)))

    def test_framesStillWaitingAtTheShutdownAreCodedInTheirThreads(self):
        """A large frame still waiting for a process when the server stops
        (more of them than processes) is coded in its thread, not failed
        with the executor's bare CancelledError."""
        pidFile = self.mktemp()
        answers, failures = {}, []

        def convert(name, function, src):
            try:
                answers[name] = _InProcessWhenLarge(function, name, self.processes)(src, runnerOf(2048, 2048))
            except Exception as e:
                failures.append((name, e))
        threads = [threading.Thread(target=convert, args=("slow", slow, pidFile), daemon=True)]
        threads[0].start()
        while not os.path.exists(pidFile) or not open(pidFile).read():
            time.sleep(0.02)
        for name in ("queued", "queuedToo", "waiting"):  # the executor's call queue takes two more; the next waits
            threads.append(threading.Thread(target=convert, args=(name, framePid, b""), daemon=True))
            threads[-1].start()
            time.sleep(0.3)
        self.processes.shutdown(5)  # the first three end within it
        for thread in threads:
            thread.join(5)
        self.assertEqual(failures, [])
        self.assertEqual(answers["waiting"], os.getpid().to_bytes(8, "little"))
        self.assertNotEqual(answers["queuedToo"], os.getpid().to_bytes(8, "little"))

    def test_theProcessesEndWithAKilledServer(self):
        """kill -9 of the server (or the OOM killer) leaves neither the
        codec processes nor their forkserver and resource tracker running."""
        output = tempfile.TemporaryFile()
        self.addCleanup(output.close)
        server = subprocess.run([sys.executable, "-c", """if True:
            import os, signal
            import multiprocessing.forkserver, multiprocessing.resource_tracker
            from pacscore.codecs.codecprocesses import CodecProcesses
            worker = CodecProcesses(1).run("test", os.getpid)
            print(worker, multiprocessing.forkserver._forkserver._forkserver_pid,
                  multiprocessing.resource_tracker._resource_tracker._pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """], stdout=output, stderr=subprocess.STDOUT, timeout=30)  # a file: no wait for the children's end
        output.seek(0)
        printed = output.read().decode()
        self.assertEqual(server.returncode, -9, printed)
        pids = [int(pid) for pid in printed.split("\n")[0].split()]  # (then the tracker warns of leaks)
        self.assertEqual(len(pids), 3, printed)
        deadline = time.monotonic() + 5
        while not all(map(ended, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([pid for pid in pids if not ended(pid)], [], "worker, forkserver, resource tracker")

    def test_processesThatCannotStartLeaveTheFramesToTheThread(self):
        """With a TMPDIR too long for the forkserver's socket ('AF_UNIX path
        too long'), a large image converts in the thread, as before, after
        one warning; the start is not tried again."""
        tmp = os.path.abspath(os.path.join(self.mktemp(), "x" * 100))
        os.makedirs(tmp)
        script = """if True:
            from twisted.logger import capturedLogs, formatEvent
            from pacscore.codecs import codecprocesses
            from pacscore.codecs.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS
            from pacscore.codecs.transcode import transcode
            from tests.pacscore.codecs.test_codecprocesses import native
            data = native(1024, 1024)
            with capturedLogs() as events:
                for _ in range(2):
                    encoded = transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS)
                    assert transcode(encoded, JPEG_2000_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN) == data
            for event in events:
                print(formatEvent(event))
            """
        converted = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                   env=dict(os.environ, TMPDIR=tmp), cwd=os.path.dirname(os.path.dirname(
                                       os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
        self.assertEqual(converted.returncode, 0, converted.stderr)
        self.assertEqual(converted.stdout.splitlines(), [
            "the codec processes cannot start (AF_UNIX path too long): large frames are coded in the conversions' "
            "threads from now on, which holds every association, the web and HL7 meanwhile"])

    def test_aLargeImageConvertsAsInTheThread(self):
        """JPEG 2000, JPEG-LS and RLE of 1024 x 1024 images (12-bit, signed
        16-bit), encoded and decoded in the processes (the options they
        change set back), bit for bit what the thread makes."""
        self.convertingInTheTestsProcesses()
        calls = []
        run = self.processes.run
        self.patch(self.processes, "run", lambda *args: calls.append(args[0]) or run(*args))
        cases = [(native(1024, 1024), syntax) for syntax in (JPEG_2000_LOSSLESS, JPEG_LS_LOSSLESS, RLE_LOSSLESS)]
        cases.append((native(1024, 1024, signed=True), JPEG_2000_LOSSLESS))
        for data, syntax in cases:
            self.patch(codecprocesses, "LARGE_FRAME", 1 << 20)
            encoded = transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, syntax)
            decoded = transcode(encoded, syntax, EXPLICIT_VR_LITTLE_ENDIAN)
            self.assertEqual(len(calls), 2, syntax)
            calls.clear()
            self.patch(codecprocesses, "LARGE_FRAME", 1 << 40)  # in the thread
            self.assertEqual(transcode(data, EXPLICIT_VR_LITTLE_ENDIAN, syntax), encoded)
            self.assertEqual(transcode(encoded, syntax, EXPLICIT_VR_LITTLE_ENDIAN), decoded)
            self.assertEqual(decoded, data)
            self.assertEqual(calls, [])

    def test_aDamagedLargeFrameIsRefusedAsInTheThread(self):
        self.convertingInTheTestsProcesses()
        data = transcode(native(1024, 1024), EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS)
        start = data.index(b"\xff\x4f\xff\x51")  # the codestream
        damaged = data[:start + 200] + bytes(len(data) - start - 200)
        with self.assertRaises(TranscodeError) as inProcesses:
            transcode(damaged, JPEG_2000_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN)
        self.patch(codecprocesses, "LARGE_FRAME", 1 << 40)
        with self.assertRaises(TranscodeError) as inThread:
            transcode(damaged, JPEG_2000_LOSSLESS, EXPLICIT_VR_LITTLE_ENDIAN)
        self.assertEqual(str(inProcesses.exception), str(inThread.exception))
