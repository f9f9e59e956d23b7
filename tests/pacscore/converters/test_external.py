"""Tests for pacscore.converters.external: write, append, system and the
programs export converter statements name."""

import os

from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.converters.script import parseScript
from tests.pacscore.converters.lines import KEYS, context, registry, run


class ExternalTests(unittest.TestCase):

    def setUp(self):
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def read(self, name):
        with open(os.path.join(self.workdir, name), encoding="utf-8", newline="") as f:
            return f.read()

    def test_write(self):
        """(lines run in turn, file, its content); names are relative to the working folder."""
        cases = [
            (['write "patient %i%n" to out.txt'], "out.txt", "patient 123\n"),
            (['write "a" to out.txt', 'write "b" to out.txt'], "out.txt", "b"),
            (['append "a;{b}%n" to log.txt', 'append "c%n" TO log.txt'], "log.txt", "a;{b}\nc\n"),
            (['write "%m" to "with space.txt"'], "with space.txt", "RTPLAN"),
            (['write "x" to %i.txt'], "123.txt", "x"),
        ]
        for lines, name, content in cases:
            for line in lines:
                self.assertEqual(run(line + "; mark a", workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"))
            self.assertEqual(self.read(name), content, lines)

    def test_exportAndAbsolutePath(self):
        path = os.path.join(self.workdir, "abs.txt")
        self.assertEqual(run(f'append "%u>%c" to {path}', kind="export")[0], Outcome.CONTINUE)
        self.assertEqual(self.read("abs.txt"), "SENDER>ARCHIVE")

    def test_system(self):
        """The command runs in the working folder; its exit status is logged."""
        with capturedLogs() as events:
            outcome, marks, _ = run("system echo %i > sys.txt; mark a", workdir=self.workdir)
        self.assertEqual((outcome, marks), (Outcome.CONTINUE, "a"))
        self.assertEqual(self.read("sys.txt"), "123\n")
        [event] = [e for e in events if "status" in e]
        self.assertEqual((event["status"], event["commandLine"], event["converter"]),
                         (0, "echo 123 > sys.txt", "ImportConverter3"))
        with capturedLogs() as events:
            run('system sh -c "exit 3"', kind="export", workdir=self.workdir)
        self.assertEqual([e["status"] for e in events if "status" in e], [3])

    def test_programsOfExportConverters(self):
        """An export statement naming no command runs as a program: with the
        object's file name as its only argument when it has no %-variable
        (``myconverter.exe``), else as written; a failure is a warning."""
        with open(os.path.join(self.workdir, "convert.sh"), "w") as f:
            f.write('echo "converted $1" > converted.txt\n')
        script = parseScript("sh convert.sh; echo %i %m > %o.txt; sh -c 'exit 4'; mark a", "ExportConverter0",
                             registry(), "export")
        lineContext = context("export", workdir=self.workdir)
        lineContext.filename = "/data/with space/1.dcm"
        lineContext.dataset.SOPInstanceUID = "1.2.3"
        with capturedLogs() as events:
            self.assertEqual(script.run(lineContext), Outcome.CONTINUE)
        self.assertEqual(lineContext.variables["x"], "a")
        self.assertEqual(self.read("converted.txt"), "converted /data/with space/1.dcm\n")
        self.assertEqual(self.read("1.2.3.txt"), "123 RTPLAN\n")
        self.assertEqual([(e["commandLine"], e["status"], e["log_level"].name) for e in events if "status" in e],
                         [('sh convert.sh "/data/with space/1.dcm"', 0, "info"),
                          ("echo 123 RTPLAN > 1.2.3.txt", 0, "info"),
                          ('sh -c \'exit 4\' "/data/with space/1.dcm"', 4, "warn")])
        script = parseScript("process.sh %f; nop.exe", "ExportConverter0", registry(), "export")
        with capturedLogs() as events:  # programs whose names start with a command's (not on the PATH here)
            script.run(lineContext)
        self.assertEqual([(e["commandLine"], e["status"]) for e in events if "status" in e],
                         [("process.sh '/data/with space/1.dcm'", 127), ('nop.exe "/data/with space/1.dcm"', 127)])
        error = self.assertRaises(ConverterSyntaxError, parseScript, "sh convert.sh", "ImportConverter0",
                                  registry(), "import")
        self.assertIn("unknown command 'sh'", str(error))

    def test_bracesOfTheShell(self):
        """Braces inside a command line are the shell's (``${...}``), not
        blocks: such a line used to stop start-up ('unknown command')."""
        for line, kind in [("system echo ${PWD} {a} %i > system.txt; mark a", "import"),
                           ("echo ${PWD} {a} %i > program.txt; mark a", "export")]:
            self.assertEqual(run(line, kind=kind, workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"), line)
        for name in ("system.txt", "program.txt"):
            self.assertEqual(self.read(name), f"{self.workdir} {{a}} 123\n")

    def test_conquestCommandsPacsLacksAreNoPrograms(self):
        """An export statement starting with one of Conquest's own commands
        pacs does not implement (``save jpg``, ``save frame``, ``merge
        study``, ``submit patient|study|series|image``) is no program to
        run, as in Conquest: parsing it warns, naming it, and running it
        only logs that it was skipped; any other ``submit`` is a program,
        as in Conquest."""
        with open(os.path.join(self.workdir, "save"), "w") as f:  # what the shell would have run
            f.write("touch ran.txt\n")
        os.chmod(os.path.join(self.workdir, "save"), 0o755)
        line = ("save jpg to %o.jpg; SAVE  Bmp size 128 to x.bmp; save frame 1 to f.dcm; merge study after 5; "
                "submit patient to x; submit2 study to y; mark a; saver %f; save.sh; submitter; submit %f; "
                "submit2 --to remote %f")
        with capturedLogs() as events:
            script = parseScript(line, "ExportConverter0", registry(), "export")
        self.assertEqual([formatEvent(e) for e in events], [
            f"ExportConverter0, column {line.index(statement) + 1}: Conquest's {command!r} is not implemented by "
            f"pacs: the statement {statement!r} will do nothing (it is not run as a program)"
            for command, statement in [("save jpg", "save jpg to %o.jpg"), ("save bmp", "SAVE  Bmp size 128 to x.bmp"),
                                       ("save frame", "save frame 1 to f.dcm"), ("merge study", "merge study after 5"),
                                       ("submit patient", "submit patient to x"),
                                       ("submit2 study", "submit2 study to y")]])
        lineContext = context("export", workdir=self.workdir)
        lineContext.dataset.SOPInstanceUID = "1.2.3"
        lineContext.filename = "/data/1.dcm"
        with capturedLogs() as events:
            self.assertEqual(script.run(lineContext), Outcome.CONTINUE)
        self.assertEqual(lineContext.variables["x"], "a")
        self.assertFalse(os.path.exists(os.path.join(self.workdir, "ran.txt")))
        messages = [formatEvent(e) for e in events]
        self.assertEqual(messages[:2], ["ExportConverter3: 'save jpg to 1.2.3.jpg' skipped: Conquest's 'save jpg' is "
                                        "not implemented by pacs",
                                        "ExportConverter3: 'SAVE  Bmp size 128 to x.bmp' skipped: Conquest's 'save "
                                        "bmp' is not implemented by pacs"])
        self.assertEqual([e["commandLine"] for e in events if "status" in e],
                         ["saver /data/1.dcm", 'save.sh "/data/1.dcm"', 'submitter "/data/1.dcm"', "submit /data/1.dcm",
                          "submit2 --to remote /data/1.dcm"])

    def test_mkdirAndRm(self):
        """Conquest's ``mkdir`` (with its parents) and ``rm`` run in pacs, not
        as shell programs, in import and export converters; a failure is
        logged in one line and the line goes on."""
        for kind in ("import", "export"):
            self.assertEqual(run("mkdir out/%i/sub; mkdir out/%i/sub; write \"x\" to out/%i/sub/f.txt; mark a",
                                 kind=kind, workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"))
            self.assertEqual(self.read("out/123/sub/f.txt"), "x")
            self.assertEqual(run("rm out/%i/sub/f.txt; rm out/%i/sub/f.txt; mark a", kind=kind,
                                 workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"))
            self.assertEqual(os.listdir(os.path.join(self.workdir, "out", "123", "sub")), [])
        with capturedLogs() as events:
            self.assertEqual(run("rm out/123; mark a", workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"))
        self.assertEqual([formatEvent(e).split(" failed: ")[0] for e in events],
                         [f"ImportConverter3: rm {self.workdir}/out/123"])
        with open(os.path.join(self.workdir, "out", "123", "sub", "f.txt"), "w"):
            pass
        with capturedLogs() as events:
            self.assertEqual(run("mkdir out/123/sub/f.txt/x; mark a", workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"))
        [message] = [formatEvent(e) for e in events]
        self.assertTrue(message.endswith("; the line goes on"), message)

    def test_rmLeavesTheArchivesFilesAlone(self):
        """``rm`` refuses, in one log line, a file in a MAG or mirror device
        (``rm %f`` after a failed ``copy %f to backup/`` lost the only stored
        copy) or of the index database, by any name; other files go.  Its
        ``-f`` and a name in double quotes are the same command (``rm -f
        %f`` and ``rm "%f"`` ran as programs and removed the stored file)."""
        names = ["data/1CT1/1.dcm", "mirror/1CT1/1.dcm", "dbase/conquest.db3", "dbase/conquest.db3-wal", "other.txt"]
        for name in names:
            os.makedirs(os.path.dirname(os.path.join(self.workdir, name)), exist_ok=True)
            with open(os.path.join(self.workdir, name), "w"):
                pass
        os.symlink(os.path.join(self.workdir, "data"), os.path.join(self.workdir, "link"))
        lineContext = context("export", workdir=self.workdir)
        lineContext.services.magDevices = [("MAG0", os.path.join(self.workdir, "data", ""))]
        lineContext.services.mirrorDevices = [("MIRROR0", os.path.join(self.workdir, "mirror"))]
        lineContext.services.databaseFiles = {os.path.join(self.workdir, "dbase", f"conquest.db3{suffix}")
                                              for suffix in ("", "-wal")}
        lineContext.filename = os.path.join(self.workdir, "data", "1CT1", "1.dcm")
        script = parseScript('rm -f %f; rm link/1CT1/1.dcm; rm "mirror/1CT1/1.dcm"; rm dbase/conquest.db3; '
                             "rm dbase/conquest.db3-wal; rm other.txt; mark a", "ExportConverter0", registry(), "export")
        with capturedLogs() as events:
            self.assertEqual(script.run(lineContext), Outcome.CONTINUE)
        self.assertEqual(lineContext.variables["x"], "a")
        self.assertEqual([os.path.exists(os.path.join(self.workdir, name)) for name in names],
                         [True, True, True, True, False])
        messages = [formatEvent(e) for e in events]
        self.assertEqual([message.split(" refused: ")[0] for message in messages],
                         [f"ExportConverter3: rm {self.workdir}/{name}"
                          for name in ["data/1CT1/1.dcm", "link/1CT1/1.dcm"] + names[1:4]])
        self.assertIn(" refused: it is in MAG0 (", messages[0])
        self.assertIn(" refused: it is in MIRROR0 (", messages[2])
        self.assertTrue(messages[3].endswith(" refused: it is a file of the archive's index database; the line goes on"))

    def test_rmGuardsTheDevicesInUse(self):
        """After ``put_param:MAGDevice0,./newdata/`` (a restart key: the
        configuration's ini names the new folder, the archive still stores
        in the old one) ``rm %f`` of a stored object is refused all the
        same (it removed the only file of an acknowledged object)."""
        stored = os.path.join(self.workdir, "data", "P4", "1.dcm")
        os.makedirs(os.path.dirname(stored))
        with open(stored, "w"):
            pass
        lineContext = context("export", workdir=self.workdir)
        lineContext.services.configuration.magDevices = [("MAG0", os.path.join(self.workdir, "newdata"))]
        lineContext.services.configuration.mirrorDevices = []
        lineContext.services.magDevices = [("MAG0", os.path.join(self.workdir, "data"))]
        lineContext.filename = stored
        script = parseScript("rm %f", "ExportConverter0", registry(), "export")
        with capturedLogs() as events:
            self.assertEqual(script.run(lineContext), Outcome.CONTINUE)
        self.assertTrue(os.path.exists(stored))
        [message] = [formatEvent(e) for e in events]
        self.assertIn(" refused: it is in MAG0 (", message)

    def test_shellFormsOfMkdirAndRmArePrograms(self):
        """A ``mkdir``/``rm`` statement with a shell option, a pattern or
        several names runs in an export converter as the program it ran as
        before pacs had these commands, but without the stored file's name
        appended (``rm -f out/*.tmp`` ran ``rm -f out/*.tmp "<stored
        file>"``, deleting the archived object); an import converter, which
        runs no program, refuses it when the line is parsed."""
        for name in ("a.tmp", "b.tmp", "keep.txt", "one", "two"):
            with open(os.path.join(self.workdir, name), "w"):
                pass
        os.makedirs(os.path.join(self.workdir, "gone", "123", "sub"))
        line = ("mkdir -m 700 made/%i/sub; mkdir -p deep/%i/er; rm -f *.tmp; rm one two; rm -rf gone/%i; "
                "rm ~/no-such-pacs-file-%i; mark a")  # mkdir -p NAME is the command (it makes the parents)
        with capturedLogs() as events:
            self.assertEqual(run(line, kind="export", workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"))
        self.assertEqual([(e["commandLine"], e["status"]) for e in events if "status" in e],
                         [("mkdir -m 700 made/123/sub", 1), ("rm -f *.tmp", 0), ("rm one two", 0),
                          ("rm -rf gone/123", 0), ("rm ~/no-such-pacs-file-123", 1)])
        self.assertEqual((sorted(os.listdir(self.workdir)), os.listdir(os.path.join(self.workdir, "gone"))),
                         (["deep", "gone", "keep.txt"], []))
        for statement in ("mkdir -m 700 out", "rm -f *.tmp", "rm one two"):
            with self.assertRaises(ConverterSyntaxError, msg=statement) as raised:
                parseScript(statement, "ImportConverter0", registry(), "import")
            self.assertIn(f"'{statement.split()[0]}' takes one file name, as Conquest's", str(raised.exception))

    def test_valuesReachTheShellAsData(self):
        """What comes over the network is data for the shell, never syntax:
        a Patient Name ``x;touch pwned1`` echoed bare, a Patient ID
        ``$(touch${IFS}pwned2)`` in single quotes and in the stored file's
        name that the ``myconverter`` form passes as ``"%f"``, reach their
        programs as they are, and nothing else runs."""
        with open(os.path.join(self.workdir, "show.sh"), "w") as f:
            f.write('printf "%s\\n" "$1" >> arguments.txt\n')
        script = parseScript("system echo %V0010,0010 >> names.txt; echo '%i' >> ids.txt; sh show.sh",
                             "ExportConverter0", registry(), "export")
        for name, patientID in (("x;touch pwned1", "$(touch${IFS}pwned2)"), ("O'Brien^\"$Ann\"", "it's 1")):
            lineContext = context("export", workdir=self.workdir)
            lineContext.dataset.PatientName = name
            lineContext.dataset.PatientID = patientID
            lineContext.filename = f"/data/{patientID} `touch pwned3`/1.dcm"
            with capturedLogs():
                self.assertEqual(script.run(lineContext), Outcome.CONTINUE)
        self.assertEqual(sorted(os.listdir(self.workdir)), ["arguments.txt", "ids.txt", "names.txt", "show.sh"])
        self.assertEqual(self.read("names.txt"), "x;touch pwned1\nO'Brien^\"$Ann\"\n")
        self.assertEqual(self.read("ids.txt"), "$(touch${IFS}pwned2)\nit's 1\n")
        self.assertEqual(self.read("arguments.txt"), "/data/$(touch${IFS}pwned2) `touch pwned3`/1.dcm\n"
                                                     "/data/it's 1 `touch pwned3`/1.dcm\n")

    def test_valuesInTheFileNameStayInItsFolder(self):
        """``write "%V0010,0010" to notes/%i.txt`` with a Patient ID that
        climbs out writes into notes/ all the same."""
        os.makedirs(os.path.join(self.workdir, "notes"))
        outside = os.path.join(os.path.dirname(self.workdir), "x.txt")
        for patientID in (f"../../{os.path.basename(self.workdir)}/../x", "P 1"):
            lineContext = context(workdir=self.workdir)
            lineContext.dataset.PatientID = patientID
            lineContext.dataset.PatientName = "Doe^John"
            parseScript('write "%V0010,0010" to notes/%i.txt', KEYS["import"], registry(), "import").run(lineContext)
        self.assertFalse(os.path.exists(outside))
        self.assertEqual(sorted(os.listdir(os.path.join(self.workdir, "notes"))),
                         ["P 1.txt", f"_._.._{os.path.basename(self.workdir)}_.._x.txt"])

    def test_unwritable(self):
        """A file that cannot be written (its folder missing) is logged in
        one line, without a traceback, and the line goes on, as in Conquest:
        an anonymising line that logs first still anonymises."""
        for line in ('write "x" to missing/out.txt; mark a', 'append "%i%n" to missing/log.txt; mark a'):
            with capturedLogs() as events:
                self.assertEqual(run(line, workdir=self.workdir)[:2], (Outcome.CONTINUE, "a"), line)
            [message] = [formatEvent(e) for e in events]
            self.assertRegex(message, r"^ImportConverter3: (write|append) to .*/missing/(out|log).txt failed: "
                                      r"No such file or directory; the line goes on$")
            self.assertNotIn("log_failure", events[0])

    def test_syntax(self):
        cases = [
            ("write hello to x.txt", "expected a double-quoted string"),
            ('write "hello" x.txt', "expected 'write \"text\" to file'"),
            ('append "hello" to', "expected 'append \"text\" to file'"),
            ('write "hello" to "x.txt" y', "unexpected 'y' after the file name"),
            ('write "hello to x.txt', "unterminated string"),
            ("system", "'system' needs an argument"),
        ]
        for line, message in cases:
            error = self.assertRaises(ConverterSyntaxError, parseScript, line, "ExportConverter0",
                                      registry(), "export")
            self.assertIn(message, str(error), line)
