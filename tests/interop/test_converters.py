"""Import converters in a running ``twistd -n pacs``, through storescu:
rules that change objects, ``reject`` (a failure status for the sender),
``destroy`` (nothing stored, Success, as Conquest does), the shipped Lua
anonymizer, and files added with dgate (ImportExportDragAndDrop); and
dicom.ini's [lua] event scripts, around DCMTK's requests."""

import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.request

import pydicom
from pydicom.uid import generate_uid
from twisted.trial import unittest

from pacscore.config.loader import defaultConfigDir
from pacscore.converters.variables import checksum
from pacscore.testing.corpus import makeDataset
from tests.interop.peers import StorescpServer
from tests.interop.server import PacsServer, dcmtk, dcmtkEnvironment, dcmtkTool, waitFor

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "PatientAddress",
               "ReferringPhysicianName", "InstitutionName", "AccessionNumber")


class ImportConverterTests(unittest.TestCase):

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-converters-")

    def image(self, name, patientID, studyUID=None, patientName="Doe^John"):
        ds = makeDataset(patientID, patientName, studyUID or generate_uid(), generate_uid(), generate_uid(), 1, 1,
                         rows=8, columns=8)
        ds.ReferringPhysicianName = "Who^Doctor"
        ds.InstitutionName = "General Hospital"
        ds.OtherPatientIDs = "OTHER-" + patientID
        path = os.path.join(self.workdir, name)
        ds.save_as(path, enforce_file_format=True)
        return ds, path

    def stored(self, server):
        return [pydicom.dcmread(p) for p in glob.glob(os.path.join(server.dataDir, "**", "*.dcm"), recursive=True)]

    def storing(self, server, path, calling):
        """storescu sending ``path`` to ``server`` as ``calling``, under way
        (its output is text)."""
        process = subprocess.Popen([dcmtkTool("storescu"), "-aet", calling, "-aec", server.ae, "127.0.0.1",
                                    str(server.port), path], env=dcmtkEnvironment(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.addCleanup(process.wait)
        return process

    def converterServer(self, line, **ini):
        """A started PacsServer whose one import converter is ``line``, with
        more dicom.ini ``ini``."""
        server = PacsServer(os.path.join(self.workdir, "pacs"), ini={"ImportConverters": "1", "ImportConverter0": line,
                                                                     **ini})
        server.start()
        self.addCleanup(server.stop)
        return server

    def luaServer(self, name, script, ini=None, start=True):
        """A PacsServer whose one import converter is ``lua:name``, the file
        holding ``script``, with more dicom.ini ``ini``; started unless not ``start``."""
        serverDir = os.path.join(self.workdir, "pacs")
        os.makedirs(serverDir)
        with open(os.path.join(serverDir, name), "w") as f:
            f.write(script)
        server = PacsServer(serverDir, ini={"ImportConverters": "1", "ImportConverter0": f"lua:{name}", **(ini or {})})
        if start:
            server.start()
            self.addCleanup(server.stop)
        return server

    def test_setRejectDestroy(self):
        server = PacsServer(os.path.join(self.workdir, "pacs"), ini={
            "ImportConverters": "3",
            "ImportConverter0": 'ifequal "%V0010,0020", "REJECTME"; reject',
            "ImportModality1": "CT",
            "ImportConverter1": 'ifmatch "%i", "DESTROY*"; { nop destroying %o from %u; destroy; }',
            "ImportConverter2": 'set 0008,0080 to "%u to %c"; set 0010,1001 to "%V0010,0010^"; delete 0010,1000',
        })
        server.start()
        self.addCleanup(server.stop)
        _, normal = self.image("normal.dcm", "PAT1")
        _, rejected = self.image("rejected.dcm", "REJECTME")
        destroyedDataset, destroyed = self.image("destroyed.dcm", "DESTROYME")
        self.assertEqual(server.store(normal, calling="MODALITY").returncode, 0)
        refused = server.store(rejected, calling="MODALITY", extra=("-v",))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Status: 0x110", refused.stderr)
        accepted = server.store(destroyed, calling="MODALITY", extra=("-v",))
        self.assertEqual(accepted.returncode, 0, accepted.stderr)
        self.assertIn("Received Store Response (Success)", accepted.stderr)
        [stored] = self.stored(server)
        self.assertEqual((stored.PatientID, stored.InstitutionName, str(stored.OtherPatientNames)),
                         ("PAT1", "MODALITY to PACS", "DOE^JOHN"))
        self.assertNotIn("OtherPatientIDs", stored)
        with sqlite3.connect(server.database) as db:
            self.assertEqual(db.execute("SELECT PatientID FROM DICOMPatients").fetchall(), [("PAT1",)])
        log = server.log()
        self.assertIn("rejected by ImportConverter0", log)
        self.assertIn(f"destroying {destroyedDataset.SOPInstanceUID} from MODALITY", log)

    def test_luaRejectCalledAsConquestsDeanonymizerDoes(self):
        """Conquest's deanonymize_script.lua refuses an object it cannot
        restore by calling reject(): the sender gets a failure status and
        the object is neither on disk nor in the index."""
        server = self.converterServer(
            'lua:if (Data.PatientID or "") ~= "KNOWN" then print("** patient "..Data.PatientID.." was not '
            'anonymized on this system **"); reject(); return end')
        _, path = self.image("rej.dcm", "REJ1")
        refused = server.store(path, extra=("-v",))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("Status: 0x110", refused.stderr)
        self.assertEqual(self.stored(server), [])
        with sqlite3.connect(server.database) as db:
            self.assertEqual(db.execute("SELECT COUNT(*) FROM DICOMImages").fetchall(), [(0,)])
        log = server.log()
        self.assertIn("ImportConverter0: ** patient REJ1 was not anonymized on this system **", log)
        self.assertIn("rejected by ImportConverter0", log)
        self.assertNotIn("Lua script failed", log)

    def test_luaAnonymizer(self):
        serverDir = os.path.join(self.workdir, "pacs")
        os.makedirs(serverDir)
        shutil.copy(os.path.join(defaultConfigDir(), "anonymize_script.lua"), serverDir)
        server = PacsServer(serverDir, ini={"ImportConverters": "1",
                                            "ImportConverter0": "lua:anonymize_script.lua"})
        server.start()
        self.addCleanup(server.stop)
        studyUID = generate_uid()
        originals = [self.image(f"lua{n}.dcm", "SECRET-ID", studyUID, "Secret^Patient") for n in range(2)]
        result = server.store(*[path for _, path in originals])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = self.stored(server)
        self.assertEqual(len(stored), 2)
        secrets = {"SECRET-ID", "Secret^Patient", "Who^Doctor", "General Hospital", "OTHER-SECRET-ID"}
        for ds in stored:
            values = {str(ds.get(keyword, "")) for keyword in IDENTIFYING}
            self.assertFalse(values & secrets, values & secrets)
            self.assertNotEqual(ds.StudyInstanceUID, studyUID)
        self.assertEqual(stored[0].StudyInstanceUID, stored[1].StudyInstanceUID)
        self.assertEqual(stored[0].PatientID, stored[1].PatientID)
        self.assertEqual({ds.SOPInstanceUID for ds in stored} & {o.SOPInstanceUID for o, _ in originals}, set())

    CONQUEST_REVERSIBLE = (
        "-- the reversible pseudonyms of Conquest's lua/anonymize_script.lua (1.11), its calls unchanged\n"
        "local stage = ''\n"
        "local function CRC32(val) return crc(tostring(val)) end\n"
        "script('newuids')\n"
        "local oldID = Data.PatientID\n"
        "local pre = CRC32(Data.PatientID)..'.'..CRC32(Data.PatientBirthDate or '')\n"
        "local pne = 'PAT'..CRC32(Data.PatientID)\n"
        "if Data.PatientName~='' then Data.PatientName = changeuid(Data.PatientName, pne, stage, 'PatientName') end\n"
        "if Data.PatientID~='' then Data.PatientID = changeuid(Data.PatientID, pre, stage, 'PatientID') end\n"
        "if Data.PatientBirthDate and Data.PatientBirthDate~='' then\n"
        "  local org = Data.PatientBirthDate\n"
        "  Data.PatientBirthDate = ''\n"
        "  changeuid(oldID..'.bd.'..org, pre..'.bd.'..Data.PatientBirthDate, stage, 'PatientBirthDate')\n"
        "end\n"
        "for key, val in ipairs({'InstitutionName', 'ReferringPhysicianName'}) do Data[val] = '' end\n"
        "Data.OtherPatientIDs = nil\n")

    def test_conquestsReversibleAnonymizer(self):
        """Conquest's anonymizer keeps reversible pseudonyms with
        changeuid(from, to, stage, type), to 'PAT' and a checksum: the
        objects are stored under them (two spellings of the patient's name
        get the one pseudonym), and changeuidback gives the originals back."""
        server = self.luaServer("anonymize_script.lua", self.CONQUEST_REVERSIBLE)
        studyUID = generate_uid()
        first, firstPath = self.image("a.dcm", "PID123", studyUID, "Doe^John")
        first.PatientBirthDate = "19600512"
        first.save_as(firstPath, enforce_file_format=True)
        _, secondPath = self.image("b.dcm", "PID123", studyUID, "Doe^J")
        for path in (firstPath, secondPath):
            result = server.store(path)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertNotIn("Lua script failed", server.log())
        pne, pre = "PAT" + checksum("PID123"), f"{checksum('PID123')}.{checksum('19600512')}"
        stored = self.stored(server)
        self.assertEqual(sorted((str(ds.PatientName), ds.PatientID) for ds in stored), [(pne, pre), (pne, pre)])
        for ds in stored:
            values = {str(ds.get(keyword, "")) for keyword in IDENTIFYING}
            self.assertFalse(values & {"PID123", "Doe^John", "Doe^J", "19600512", "General Hospital"}, values)
            self.assertNotEqual(ds.StudyInstanceUID, studyUID)
        with sqlite3.connect(server.database) as db:
            self.assertEqual(db.execute("SELECT PatientID, PatientName FROM DICOMPatients").fetchall(), [(pre, pne)])
        backs = [server.dgate(f"--changeuidback:{value}").stdout.strip() for value in (pne, pre, f"{pre}.bd.")]
        # both names were given the pseudonym within one second: either is the first recorded
        self.assertIn(backs[0], ("Doe^John", "Doe^J"))
        self.assertEqual(backs[1:], ["PID123", "PID123.bd.19600512"])

    def test_luaColonLineIsCode(self):
        """As in Conquest, ``lua:`` takes the rest of the line, semicolons
        and all, as Lua code: both elements are changed in the stored file
        and in the index."""
        server = self.converterServer("lua:Data.PatientName='LUA^CHANGED'; Data.PatientID='LUAID'")
        _, path = self.image("lua.dcm", "PAT1")
        result = server.store(path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [stored] = self.stored(server)
        self.assertEqual((str(stored.PatientName), stored.PatientID), ("LUA^CHANGED", "LUAID"))
        with sqlite3.connect(server.database) as db:
            self.assertEqual(db.execute("SELECT PatientID, PatientName FROM DICOMPatients").fetchall(),
                             [("LUAID", "LUA^CHANGED")])
            self.assertEqual(db.execute("SELECT ImagePat FROM DICOMImages").fetchall(), [("LUAID",)])
        self.assertNotIn("Lua script failed", server.log())

    def test_conquestStyleLuaScript(self):
        """What Conquest's own scripts rely on: an absent element is nil,
        ``Data.Seq.X`` is item 0's element, dbquery's sort order."""
        server = self.luaServer(
            "conquest.lua",
            "local id = Data.PatientID or 'unknown'\n"
            "if Data.ReferencedStudySequence then\n"
            "  Data.ReferencedStudySequence.ReferencedSOPInstanceUID = '1.2.3.' .. #id\n"
            "end\n"
            "local rows = dbquery('DICOMPatients', 'PatientID', '', 'PatientID desc')\n"
            "Data.InstitutionName = (Data.InstitutionAddress or 'no address') .. '/' .. id .. '/' .. "
            "(rows[1] and rows[1][1] or 'none')\n")
        withSequence, first = self.image("first.dcm", "PAT1")
        withSequence.ReferencedStudySequence = [pydicom.Dataset()]
        withSequence.ReferencedStudySequence[0].ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        withSequence.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "9.9"
        withSequence.save_as(first, enforce_file_format=True)
        _, second = self.image("second.dcm", "PATIENT2")
        for path in (first, second):
            result = server.store(path)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = {ds.PatientID: ds for ds in self.stored(server)}
        self.assertEqual(stored["PAT1"].InstitutionName, "no address/PAT1/none")
        self.assertEqual(stored["PAT1"].ReferencedStudySequence[0].ReferencedSOPInstanceUID, "1.2.3.4")
        self.assertEqual(stored["PATIENT2"].InstitutionName, "no address/PATIENT2/PAT1")
        self.assertNotIn("ReferencedStudySequence", stored["PATIENT2"])
        self.assertNotIn("Lua script failed", server.log())

    def test_luaObjectsAndFiles(self):
        """Conquest's GetVR/SetVR, Data.Seq[N] appending, newdicomobject,
        Write and readdicom (in LuaFileFolder) on an object storescu sends."""
        server = self.luaServer(
            "objects.lua",
            "local rows = Data:GetVR(0x0028, 0x0010)\n"
            "Data:SetVR(0x0008, 0x1030, Data:GetVR(0x0010, 0x0010, true) .. '/' .. (rows[0] + 256 * rows[1]))\n"
            "Data.ReferencedStudySequence = {}\n"
            "local s = Data.ReferencedStudySequence\n"
            "s[#s].ReferencedSOPInstanceUID = '1.2.3.1'\n"
            "s[#s].ReferencedSOPInstanceUID = '1.2.3.2'\n"
            "local copy = newdicomobject()\n"
            "copy.PatientID = Data.PatientID\n"
            "copy.SOPInstanceUID = Data.SOPInstanceUID\n"
            "copy.SOPClassUID = Data.SOPClassUID\n"
            "copy:Write('copies/' .. Data.SOPInstanceUID .. '.dcm')\n"
            "local back = DicomObject:new()\n"
            "print('read back', readdicom(back, 'copies/' .. Data.SOPInstanceUID .. '.dcm'), back.PatientID)\n"
            "print('missing', readdicom(back, 'copies/none.dcm') == nil)\n", ini={"LuaFileFolder": "luafiles"})
        original, path = self.image("objects.dcm", "PAT7")
        result = server.store(path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [stored] = self.stored(server)
        self.assertEqual(stored.StudyDescription, "Doe^John/8")
        self.assertEqual([item.ReferencedSOPInstanceUID for item in stored.ReferencedStudySequence],
                         ["1.2.3.1", "1.2.3.2"])
        copy = pydicom.dcmread(os.path.join(server.workdir, "luafiles", "copies", f"{original.SOPInstanceUID}.dcm"))
        self.assertEqual((copy.PatientID, copy.SOPInstanceUID), ("PAT7", original.SOPInstanceUID))
        log = server.log()
        self.assertIn("read back\t1\tPAT7", log)
        self.assertIn("missing\ttrue", log)
        self.assertNotIn("Lua script failed", log)

    def test_luaServerCommand(self):
        """servercommand in an import converter runs a control command (as
        the control port would) while the object waits in its worker."""
        server = self.luaServer(
            "command.lua",
            "local status = servercommand('display_status:')\n"
            "Data.StudyDescription = status:match(\"DICOM server '[^']*'\")\n"
            "print('unknown', servercommand('nosuch:'))\n")
        _, path = self.image("command.dcm", "PAT8")
        result = server.store(path)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [stored] = self.stored(server)
        self.assertEqual(stored.StudyDescription, "DICOM server 'PACS'")
        log = server.log()
        self.assertIn("unknown\tnil\tnosuch:: unknown command --nosuch", log)
        self.assertNotIn("Lua script failed", log)

    def test_luaDicomQueryAndMove(self):
        """dicomquery and dicommove in an import converter, sent to the
        server itself while the object waits in its worker: the query's
        matches come back as objects, the move reaches a storescp."""
        server = self.luaServer(
            "query.lua",
            "if Data.PatientID ~= 'QUERIER' then return end\n"
            "local q = newdicomobject()\n"
            "q.PatientID = 'PAT1'\n"
            "q.StudyInstanceUID = ''\n"
            "local studies, reason = dicomquery('PACS', 'STUDY', q)\n"
            "Data.ImageComments = #studies .. ' ' .. (studies[0] and studies[0].StudyInstanceUID or reason)\n"
            "q.QueryRetrieveLevel = 'STUDY'\n"
            "q.StudyInstanceUID = studies[0].StudyInstanceUID\n"
            "print('moved', dicommove('PACS', 'MOVEDEST', q))\n", start=False)
        storescp = StorescpServer(tempfile.mkdtemp(dir=self.workdir), aet="MOVEDEST")
        self.addCleanup(storescp.stop)
        storescp.start()
        server.addNode(storescp.aet, storescp.port)
        server.addNode(server.ae, server.port)
        server.start()
        self.addCleanup(server.stop)
        first, firstPath = self.image("first.dcm", "PAT1")
        _, querierPath = self.image("querier.dcm", "QUERIER")
        for path in (firstPath, querierPath):
            result = server.store(path)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        stored = {ds.PatientID: ds for ds in self.stored(server)}
        self.assertEqual(stored["QUERIER"].ImageComments, f"1 {first.StudyInstanceUID}")
        [arrived] = storescp.files()
        self.assertEqual(pydicom.dcmread(arrived).SOPInstanceUID, first.SOPInstanceUID)
        log = server.log()
        self.assertIn("moved\ttrue", log)
        self.assertNotIn("Lua script failed", log)

    def test_aSlowConverterOfOneSenderHoldsUpNoOther(self):
        """Six objects of one sender whose converter line runs a slow
        program (more than the archive's I/O threads) leave the threads
        free for another sender: its store and a control command are
        answered at once, while the slow ones are stored after."""
        server = self.converterServer('ifequal "%u","SLOWAE"; system sleep 12')
        slow = [self.storing(server, self.image(f"slow{n}.dcm", f"SLOW{n}")[1], "SLOWAE") for n in range(6)]
        time.sleep(3)  # their converters run
        started = time.monotonic()
        fast = self.storing(server, self.image("fast.dcm", "FAST")[1], "FASTAE")
        output = fast.communicate(timeout=60)[0]
        self.assertEqual(fast.returncode, 0, output)
        self.assertEqual(server.dgate("--display_status:").returncode, 0)
        self.assertLess(time.monotonic() - started, 6)
        self.assertEqual([process.poll() for process in slow], [None] * 6, "the slow ones still converting")
        for process in slow:
            output = process.communicate(timeout=120)[0]
            self.assertEqual(process.returncode, 0, output)
        self.assertEqual(len(self.stored(server)), 7)

    def test_luaCommandsOfSixAssociationsAtOnce(self):
        """Six modalities storing at once through a converter that calls
        servercommand and dicomquery (on the server itself, whose C-FIND
        reads in the pool the converters wait in): every call is answered,
        none refused as busy, none left to deadlock."""
        server = self.luaServer(
            "lookup.lua",
            "local status, why = servercommand('display_status:')\n"
            "local q = newdicomobject()\n"
            "q.PatientID = Data.PatientID\n"
            "q.StudyInstanceUID = ''\n"
            "local studies, reason = dicomquery('PACS', 'STUDY', q)\n"
            "if status and not reason then print('LOOKUP-OK') else print('LOOKUP-FAILED', why, reason) end\n",
            start=False)
        server.addNode(server.ae, server.port)
        server.start()
        self.addCleanup(server.stop)
        senders = []
        for modality in range(6):
            studyUID = generate_uid()
            paths = [self.image(f"m{modality}-{n}.dcm", f"LOOKUP{modality}", studyUID)[1] for n in range(5)]
            process = subprocess.Popen([dcmtkTool("storescu"), "-aet", f"MOD{modality}", "-aec", server.ae,
                                        "127.0.0.1", str(server.port), *paths], env=dcmtkEnvironment(),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.addCleanup(process.wait)
            senders.append(process)
        for process in senders:
            output = process.communicate(timeout=300)[0]
            self.assertEqual(process.returncode, 0, output)
        log = server.log()
        self.assertEqual((log.count("LOOKUP-OK"), log.count("LOOKUP-FAILED")), (30, 0), log)
        self.assertEqual(len(self.stored(server)), 30)

    def test_associationScriptsQueryingTheServerOfTenModalitiesAtOnce(self):
        """Ten modalities storing at once, each association's [lua]
        association script querying the server itself while its converters
        wait for their turn in its Lua state: every query is answered and
        every storescu done in seconds, not after LuaCommandTimeout."""
        server = self.luaServer("count.lua", "k = (k or 0) + 1", ini={"LuaCommandTimeout": "60"}, start=False)
        server.addNode(server.ae, server.port)
        server.setIni("lua", association=f"if CallingAE ~= '{server.ae}' then local q = newdicomobject(); "
                                         "q.PatientID = 'NOSUCH'; q.StudyInstanceUID = ''; "
                                         f"local s, r = dicomquery('{server.ae}', 'STUDY', q); "
                                         "print('AQUERY', CallingAE, s and #s, r) end")
        server.start()
        self.addCleanup(server.stop)
        senders, started = [], time.monotonic()
        for modality in range(10):
            paths = [self.image(f"q{modality}-{n}.dcm", f"AQ{modality}")[1] for n in range(5)]
            senders.append(subprocess.Popen([dcmtkTool("storescu"), "-aet", f"MODQ{modality}", "-aec", server.ae,
                                             "127.0.0.1", str(server.port), *paths], env=dcmtkEnvironment(),
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            self.addCleanup(senders[-1].wait)
        for process in senders:
            output = process.communicate(timeout=300)[0]
            self.assertEqual(process.returncode, 0, output)
        self.assertLess(time.monotonic() - started, 30)
        waitFor(lambda: server.log().count("AQUERY") == 10, message="ten association scripts")
        log = server.log()
        self.assertEqual(sorted(line.split("association: ")[1] for line in log.splitlines() if "AQUERY" in line),
                         [f"AQUERY\tMODQ{modality}\t0\tnil" for modality in range(10)], log)
        self.assertEqual(len(self.stored(server)), 50)

    def test_luaGlobalsLastForTheAssociation(self):
        """As in Conquest, one Lua state per association: its import
        converters count its objects and call the helpers its [lua]
        association script loaded; the next association starts afresh."""
        server = self.luaServer("count.lua", "n = (n or 0) + 1; print('n', n, assocvar, tagit and tagit('x'))",
                                ini={"LuaFileFolder": "luafiles"}, start=False)
        os.makedirs(os.path.join(server.workdir, "luafiles"))
        with open(os.path.join(server.workdir, "luafiles", "helpers.lua"), "w") as f:
            f.write("function tagit(x) return 'H-' .. x .. '-' .. Data.PatientID end\n")
        server.setIni("lua", association="dofile('helpers.lua'); assocvar = 'set-in-association'",
                      endassociation="print('objects', n)")
        server.start()
        self.addCleanup(server.stop)
        paths = [self.image(f"g{n}.dcm", f"GLOBALS{n}")[1] for n in range(3)]
        for sent in (paths, paths[:1]):
            result = server.store(*sent)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        waitFor(lambda: server.log().count("[lua] endassociation: objects") == 2, message="both ends")
        log = server.log()
        self.assertEqual([line.split("ImportConverter0: ")[1] for line in log.splitlines() if "ImportConverter0: n" in line],
                         ["n\t1\tset-in-association\tH-x-GLOBALS0", "n\t2\tset-in-association\tH-x-GLOBALS1",
                          "n\t3\tset-in-association\tH-x-GLOBALS2", "n\t1\tset-in-association\tH-x-GLOBALS0"])
        self.assertEqual([line.split("endassociation: ")[1] for line in log.splitlines() if "endassociation: " in line],
                         ["objects\t3", "objects\t1"])

    def test_aRunStoppedByTheInstructionLimitLeavesTheRestOfItsAssociationAnonymized(self):
        """An anonymizer stopped by LuaMaxInstructions on one object of an
        association still anonymizes the objects sent after it."""
        server = self.luaServer("scrub.lua", "if Data.PatientID == 'STOPME' then while true do end end\n"
                                             "Data.PatientName = 'ANON^ANON'; Data.InstitutionName = 'SCRUBBED'\n",
                                ini={"LuaMaxInstructions": "100000"})
        paths = [self.image(f"s{n}.dcm", "STOPME" if n == 1 else f"SCRUB{n}", patientName="Real^Name")[1]
                 for n in range(4)]
        result = server.store(*paths)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        names = {ds.PatientID: (str(ds.PatientName), ds.InstitutionName) for ds in self.stored(server)}
        self.assertEqual(names, {"SCRUB0": ("ANON^ANON", "SCRUBBED"), "STOPME": ("Real^Name", "General Hospital"),
                                 "SCRUB2": ("ANON^ANON", "SCRUBBED"), "SCRUB3": ("ANON^ANON", "SCRUBBED")})
        self.assertIn("ImportConverter0: Lua script failed: scrub.lua:1: script stopped after 100000 instructions",
                      server.log())

    def test_aCopyArrivingDuringTheImportOfAnotherIsStoredAfterIt(self):
        """A second sender's copy of an object whose first copy is in a slow
        import converter that then rejects it waits, and is stored: its
        Success is never given for an object pacs does not keep."""
        server = self.luaServer("slow.lua", "if CallingAE == 'MOD1' then os.execute('sleep 3'); return 'reject' end",
                                ini={"LuaAllowUnsafe": "1"})
        ds, path = self.image("resent.dcm", "PAT9")
        first = self.storing(server, path, "MOD1")
        waitFor(lambda: "association MOD1 -> PACS accepted" in server.log(), message="the first copy")
        time.sleep(1)
        second = server.store(path, calling="MOD2")
        self.assertEqual(first.communicate(timeout=60)[0].count("Received Store Response (Success)"), 0)
        self.assertEqual(second.returncode, 0, second.stdout + second.stderr)
        [stored] = self.stored(server)
        self.assertEqual(stored.SOPInstanceUID, ds.SOPInstanceUID)

    def test_aCopyArrivingDuringAMoveOfAPriorStudyIsStoredAfterIt(self):
        """A second sender's copy arriving while the import converter of the
        first fetches another patient's prior study with dicommove (which
        cannot bring it), and then rejects the first copy, waits and is
        stored: it is not taken for the move's own copy, answered Success and lost."""
        prior, priorPath = self.image("prior.dcm", "PRIOR")
        other = PacsServer(os.path.join(self.workdir, "other"), ae="B")
        server = self.luaServer(
            "prior.lua",
            "if CallingAE == 'B' then os.execute('sleep 3') return end\n"
            "if CallingAE == 'MOD1' then\n"
            "  local s = newdicomobject(); s.QueryRetrieveLevel = 'STUDY'; s.PatientID = 'PRIOR'\n"
            f"  s.StudyInstanceUID = '{prior.StudyInstanceUID}'\n"
            "  print('move', dicommove('B', 'PACS', s))\n"
            "  return 'reject'\n"
            "end\n", ini={"LuaAllowUnsafe": "1"}, start=False)
        other.addNode(server.ae, server.port)
        server.addNode(other.ae, other.port)
        other.start()
        self.addCleanup(other.stop)
        server.start()
        self.addCleanup(server.stop)
        self.assertEqual(other.store(priorPath).returncode, 0)
        ds, path = self.image("current.dcm", "CUR")
        first = self.storing(server, path, "MOD1")
        waitFor(lambda: "association B -> PACS accepted" in server.log(), message="the move's copy")
        second = server.store(path, calling="MOD2")
        self.assertEqual(first.communicate(timeout=60)[0].count("Received Store Response (Success)"), 0)
        self.assertEqual(second.returncode, 0, second.stdout + second.stderr)
        self.assertEqual(sorted(stored.PatientID for stored in self.stored(server)), ["CUR", "PRIOR"])
        self.assertNotIn("not stored", server.log())

    def test_aConverterKeepsTheBytesOfTextItDoesNotTouch(self):
        """An object that says ISO_IR 192 with a Latin-1 name: an ASCII
        change of another attribute stores the name's bytes as they came."""
        server = self.converterServer('set 0008,0080 to "Klinik"', ImportModality0="*")
        ds, path = self.image("bad.dcm", "BAD2")
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds["PatientName"].value = b"Ung\xfcltig^Namen"
        ds.save_as(path, enforce_file_format=True)
        self.assertEqual(server.store(path).returncode, 0)
        [stored] = self.stored(server)
        self.assertEqual((stored.get_item(0x00100010).value, stored.InstitutionName), (b"Ung\xfcltig^Namen", "Klinik"))

    def test_aLuaInitialsScriptOnLatin1AndUTF8Names(self):
        """string.sub of a name starting with a letter beyond ASCII cut the
        Lua script short ('utf-8' codec can't decode byte 0xc3) and the
        object was stored with its name: now cut to the first byte of its
        UTF-8 text, whatever the object's character set, read as Latin-1:
        the name is anonymised."""
        server = self.converterServer("lua \"Data.PatientName = string.sub(Data.PatientName, 1, 1) .. '^ANON'\"")
        for patientID, charset in (("LAT1", "ISO_IR 100"), ("UTF1", "ISO_IR 192")):
            ds, path = self.image(f"{patientID}.dcm", patientID)
            ds.SpecificCharacterSet, ds.PatientName = charset, "Öztürk^Ümit"
            ds.save_as(path, enforce_file_format=True)
            self.assertEqual(server.store(path).returncode, 0)
        names = {ds.PatientID: str(ds.PatientName) for ds in self.stored(server)}
        self.assertEqual(names, {"LAT1": "\u00c3^ANON", "UTF1": "\u00c3^ANON"})
        self.assertNotIn("Lua script failed", server.log())

    def test_addedFilesPassTheConvertersOnlyWithImportExportDragAndDrop(self):
        server = self.converterServer('set 0008,0080 to "converted"')
        _, first = self.image("first.dcm", "PAT1")
        _, second = self.image("second.dcm", "PAT2")
        for path, setting in ((first, "0"), (second, "1")):
            self.assertEqual(server.dgate(f"--put_param:ImportExportDragAndDrop,{setting}").returncode, 0)
            added = server.dgate(f"--addimagefile:{path}")
            self.assertEqual(added.returncode, 0, added.stdout + added.stderr)
        stored = {ds.PatientID: ds.InstitutionName for ds in self.stored(server)}
        self.assertEqual(stored, {"PAT1": "General Hospital", "PAT2": "converted"})


class QueryRetrieveConverterTests(unittest.TestCase):
    """QueryConverter0, QueryResultConverter0, RetrieveConverter0 and
    RetrieveResultConverter0 with findscu and getscu."""

    def test_queryAndRetrieveConverters(self):
        workdir = tempfile.mkdtemp(prefix="pacs-qrconverters-")
        server = PacsServer(os.path.join(workdir, "pacs"), ini={
            "QueryConverter0": "nop query from %u: %V0008,0052 level",
            "QueryResultConverter0": 'ifequal "%V0010,0020", "HIDDEN"; destroy',
            "RetrieveConverter0": 'nop retrieve by %u to %s; ifequal "%V0010,0020", "HIDDEN"; destroy',
            "RetrieveResultConverter0": 'set 0008,0080 to "sent by %c to %s"; delete 0010,1040',
        })
        server.start()
        self.addCleanup(server.stop)
        paths = []
        for patient in ("SHOWN", "HIDDEN"):
            ds = makeDataset(patient, "Some^One", generate_uid(), generate_uid(), generate_uid(), 1, 1,
                             rows=8, columns=8)
            ds.PatientAddress = "Secret street 1"
            paths.append(os.path.join(workdir, f"{patient}.dcm"))
            ds.save_as(paths[-1], enforce_file_format=True)
        self.assertEqual(server.store(*paths, calling="FINDER").returncode, 0)
        out = tempfile.mkdtemp(dir=workdir)
        found = dcmtk("findscu", "-P", "-X", "-od", out, "-aet", "FINDER", "-aec", server.ae, "-k",
                      "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "127.0.0.1", server.port)
        self.assertEqual(found.returncode, 0, found.stderr)
        matches = [pydicom.dcmread(os.path.join(out, name)) for name in os.listdir(out)]
        self.assertEqual([m.PatientID for m in matches], ["SHOWN"])
        self.assertIn("query from FINDER: PATIENT level", server.log())
        with urllib.request.urlopen(f"http://127.0.0.1:{server.webPort}/dicom-web/studies?PatientID=*",
                                    timeout=30) as response:
            studies = json.load(response)
        self.assertEqual([study["00100020"]["Value"] for study in studies], [["SHOWN"]])
        self.assertIn("query from : STUDY level", server.log())
        with urllib.request.urlopen(f"http://127.0.0.1:{server.webPort}/cgi-bin/dgate?mode=querypatients",
                                    timeout=30) as response:
            page = response.read().decode()
        self.assertIn("<caption>1 patients</caption>", page)
        self.assertIn("SHOWN", page)
        self.assertNotIn("HIDDEN", page)
        self.assertIn("query from : PATIENT level", server.log())
        received = {}
        for patient in ("SHOWN", "HIDDEN"):
            out = tempfile.mkdtemp(dir=workdir)
            got = dcmtk("getscu", "-P", "-aet", "GETTER", "-aec", server.ae, "-od", out, "-k",
                        "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={patient}", "127.0.0.1", server.port)
            self.assertEqual(got.returncode, 0, got.stderr)
            received[patient] = [pydicom.dcmread(os.path.join(out, name)) for name in os.listdir(out)]
        self.assertEqual(received["HIDDEN"], [])
        self.assertIn("C-GET answered with nothing: destroyed by RetrieveConverter0", server.log())
        [retrieved] = received["SHOWN"]
        self.assertEqual(retrieved.InstitutionName, f"sent by {server.ae} to GETTER")
        self.assertNotIn("PatientAddress", retrieved)
        self.assertEqual(retrieved.pixel_array.shape, (8, 8))
        self.assertIn("retrieve by GETTER to GETTER", server.log())
        storescp = StorescpServer(tempfile.mkdtemp(dir=workdir), aet="MOVEDEST")
        self.addCleanup(storescp.stop)
        storescp.start()
        server.addNode(storescp.aet, storescp.port)
        self.assertEqual(server.dgate("--read_amap:").returncode, 0)
        moved = dcmtk("movescu", "-P", "-aet", "MOVER", "-aec", server.ae, "-aem", storescp.aet, "-k",
                      "QueryRetrieveLevel=PATIENT", "-k", "PatientID=SHOWN", "127.0.0.1", server.port)
        self.assertEqual(moved.returncode, 0, moved.stderr)
        self.assertIn("retrieve by MOVER to MOVEDEST", server.log())
        [arrived] = storescp.files()
        self.assertEqual(pydicom.dcmread(arrived).InstitutionName, f"sent by {server.ae} to MOVEDEST")


    def test_resultConvertersCallTheAssociationsLuaFunctions(self):
        """As in Conquest, the query and retrieve converters of an
        association run in its Lua state: Conquest's association.lua
        removePrivateInfo(), defined by the [lua] association script, blanks
        the names of findscu's answers and of the objects getscu gets."""
        workdir = tempfile.mkdtemp(prefix="pacs-qrconverters-")
        server = PacsServer(os.path.join(workdir, "pacs"), ini={
            "QueryResultConverter0": "lua:removePrivateInfo()", "RetrieveResultConverter0": "lua:removePrivateInfo()"})
        server.setIni("lua", association=(
            "function removePrivateInfo(filter) if filter then if (filter() or 1)==0 then return end end; "
            "if Data.PatientName then Data.PatientName = '' end; "
            "if Data.PatientAddress then Data.PatientAddress = '' end end"))
        server.start()
        self.addCleanup(server.stop)
        ds = makeDataset("PID123", "Doe^John", generate_uid(), generate_uid(), generate_uid(), 1, 1, rows=8, columns=8)
        ds.PatientAddress = "Secret street 1"
        path = os.path.join(workdir, "private.dcm")
        ds.save_as(path, enforce_file_format=True)
        self.assertEqual(server.store(path).returncode, 0)
        out = tempfile.mkdtemp(dir=workdir)
        found = dcmtk("findscu", "-S", "-X", "-od", out, "-aec", server.ae, "-k", "QueryRetrieveLevel=STUDY",
                      "-k", "PatientID=PID123", "-k", "PatientName", "-k", "StudyInstanceUID", "127.0.0.1", server.port)
        self.assertEqual(found.returncode, 0, found.stderr)
        [match] = [pydicom.dcmread(os.path.join(out, name)) for name in os.listdir(out)]
        self.assertEqual((match.PatientID, str(match.PatientName)), ("PID123", ""))
        out = tempfile.mkdtemp(dir=workdir)
        got = dcmtk("getscu", "-P", "-aec", server.ae, "-od", out, "-k", "QueryRetrieveLevel=PATIENT",
                    "-k", "PatientID=PID123", "127.0.0.1", server.port)
        self.assertEqual(got.returncode, 0, got.stderr)
        [retrieved] = [pydicom.dcmread(os.path.join(out, name)) for name in os.listdir(out)]
        self.assertEqual((str(retrieved.PatientName), retrieved.PatientAddress), ("", ""))
        self.assertNotIn("Lua script failed", server.log())


class LuaEventTests(unittest.TestCase):
    """dicom.ini's [lua] event scripts in one running server, driven by DCMTK's tools."""

    COMMAND = ("print('command', Command.CommandField, Command.AffectedSOPClassUID, Association.Calling); "
               "if Association.Calling == 'BLOCKED' then return 'reject' end; "
               "if Association.Calling == 'CHANGER' then Command.AffectedSOPClassUID = '1.2.3.4' end")

    @classmethod
    def setUpClass(cls):
        cls.server = PacsServer(tempfile.mkdtemp(prefix="pacs-luaevents-"))
        cls.server.setIni("lua", startup="print('started as ' .. servercommand('get_param:MyACRNema'))",
                          association="print('association ' .. Association.Calling .. ' -> ' .. Association.Called)",
                          command=cls.COMMAND,
                          clienterror="print('client error', Command.CommandField, Command.AffectedSOPClassUID, "
                                      "Association.Calling)",
                          endassociation="print('ended', Association.Calling, Association.Called)")
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def tearDown(self):
        self.assertNotIn("Lua script failed", self.server.log())

    def logged(self, line):
        waitFor(lambda: line in self.server.log(), timeout=10, message=repr(line))

    def echo(self, calling, *extra):
        return dcmtk("echoscu", "-aet", calling, "-aec", self.server.ae, *extra, "127.0.0.1", self.server.port)

    def test_startupAndAssociation(self):
        self.assertEqual(self.server.echo().returncode, 0)
        self.logged("[lua] association: association ECHOSCU -> PACS")
        self.assertIn(f"[lua] startup: started as {self.server.ae}", self.server.log())

    def test_commandBeforeEachRequest(self):
        """The command script has run when the request is answered."""
        found = dcmtk("findscu", "-S", "-aet", "FINDER", "-aec", self.server.ae, "-k", "QueryRetrieveLevel=STUDY",
                      "-k", "PatientID=NOBODY", "127.0.0.1", self.server.port)
        self.assertEqual(found.returncode, 0, found.stderr)
        self.assertIn("[lua] command: command\t32\t1.2.840.10008.5.1.4.1.2.2.1\tFINDER", self.server.log())

    def test_commandRefusesARequest(self):
        """A request the script refuses gets no answer: the association is
        aborted, and no endassociation script runs for it."""
        refused = self.echo("BLOCKED")
        self.assertIn("Echo Failed: 0006:0317 Peer aborted Association", refused.stderr)
        log = self.server.log()
        self.assertIn("[lua] command: command\t48\t1.2.840.10008.1.1\tBLOCKED", log)
        self.assertRegex(log, r"BLOCKED@127\.0\.0\.1:\d+: C-ECHO-RQ refused by the \[lua\] command script, aborting")
        self.assertEqual(self.echo("AFTERBLOCKED").returncode, 0)
        self.logged("[lua] endassociation: ended\tAFTERBLOCKED\tPACS")
        self.assertNotIn("[lua] endassociation: ended\tBLOCKED", self.server.log())

    def test_commandChangedAndClientError(self):
        """The request served is the command set as the script left it: a
        C-STORE whose SOP class it changed is refused (0122), which is a
        client error, and the association goes on."""
        image = makeDataset("CHANGED", "Doe^John", generate_uid(), generate_uid(), generate_uid(), 1, 1,
                            rows=8, columns=8)
        path = os.path.join(self.server.workdir, "changed.dcm")
        image.save_as(path, enforce_file_format=True)
        stored = self.server.store(path, calling="CHANGER", extra=("-v",))
        self.assertIn("Received Store Response (Refused: SOPClassNotSupported)", stored.stderr)
        self.logged("[lua] clienterror: client error\t1\t1.2.3.4\tCHANGER")
        self.logged("[lua] endassociation: ended\tCHANGER\tPACS")

    def test_endAssociationReleasedOrAborted(self):
        self.assertEqual(self.echo("RELEASER").returncode, 0)
        self.assertEqual(self.echo("ABORTER", "--abort").returncode, 0)
        self.logged("[lua] endassociation: ended\tRELEASER\tPACS")
        self.logged("[lua] endassociation: ended\tABORTER\tPACS")


class AnonymisingSendTests(unittest.TestCase):
    """A line that gives the object new UIDs on its way out (an s0 code's
    CompressionConverter0, RetrieveResultConverter0): the C-STORE command
    names the data set it carries, which DCMTK storescp checks (A900)."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="pacs-anonsend-")
        self.storescp = StorescpServer(os.path.join(self.workdir, "storescp"), aet="RESEARCH")
        self.addCleanup(self.storescp.stop)
        self.storescp.start()

    def server(self, ini, compression):
        server = PacsServer(os.path.join(self.workdir, "pacs"), ini=ini)
        server.addNode(self.storescp.aet, self.storescp.port, compression=compression)
        server.start()
        self.addCleanup(server.stop)
        self.study = generate_uid()
        self.sent = []
        for number in (1, 2):
            ds = makeDataset("PHI123", "Doe^John", self.study, generate_uid(), generate_uid(), 1, number,
                             rows=8, columns=8)
            path = os.path.join(self.workdir, f"{number}.dcm")
            ds.save_as(path, enforce_file_format=True)
            self.sent.append(ds.SOPInstanceUID)
        self.assertEqual(server.store(*[os.path.join(self.workdir, f"{n}.dcm") for n in (1, 2)]).returncode, 0)
        return server

    def assertReceivedAnew(self, count):
        """``count`` files reached storescp (which refuses a C-STORE whose
        command names another instance than its data set), none with a
        stored UID."""
        files = self.storescp.files()
        self.assertEqual(len(files), count)
        for path in files:
            ds = pydicom.dcmread(path)
            self.assertEqual(ds.file_meta.MediaStorageSOPInstanceUID, ds.SOPInstanceUID)
            self.assertNotIn(ds.SOPInstanceUID, self.sent)
            self.assertEqual(ds.PatientID, "ANON")

    def move(self, server):
        return dcmtk("movescu", "-S", "-aec", server.ae, "-aem", self.storescp.aet, "-k",
                     "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={self.study}", "127.0.0.1", server.port)

    def test_compressionLineWithNewUIDs(self):
        server = self.server({"CompressionConverter0": 'newuids; set 0010,0020 to "ANON"',
                              "ExportConverters": "1",
                              "ExportConverter0": f"forward compressed as s0 to {self.storescp.aet}"}, "s0")
        waitFor(lambda: len(self.storescp.files()) == 2, message="the forwarded images")
        self.assertReceivedAnew(2)
        self.storescp.reset()
        moved = self.move(server)
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertReceivedAnew(2)
        self.assertNotIn("0xA900", server.log())
        self.storescp.reset()
        moved = server.dgate(f"--movestudy:{server.ae},{self.storescp.aet},PHI123:{self.study}")
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertReceivedAnew(2)

    def test_retrieveResultConverterWithNewUIDs(self):
        server = self.server({"RetrieveResultConverter0": 'newuids; set 0010,0020 to "ANON"'}, "un")
        moved = self.move(server)
        self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
        self.assertReceivedAnew(2)
        out = tempfile.mkdtemp(dir=self.workdir)
        got = dcmtk("getscu", "-S", "-aec", server.ae, "-od", out, "-k", "QueryRetrieveLevel=STUDY", "-k",
                    f"StudyInstanceUID={self.study}", "127.0.0.1", server.port)
        self.assertEqual(got.returncode, 0, got.stdout + got.stderr)
        received = [pydicom.dcmread(os.path.join(out, name)) for name in os.listdir(out)]
        self.assertEqual(len(received), 2)
        for ds in received:
            self.assertNotIn(ds.SOPInstanceUID, self.sent)


class StuckScriptTests(unittest.TestCase):

    def test_aScriptStuckInPatternMatchingDoesNotHoldTheStop(self):
        """An import converter stuck inside one call of Lua's pattern
        matching (C, where LuaMaxInstructions counts nothing; minutes for
        this pattern) holds its I/O worker, but SIGTERM still stops the
        server within QuitGracePeriod and a few seconds."""
        workdir = tempfile.mkdtemp(prefix="pacs-converters-")
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        with open(os.path.join(workdir, "stuck.lua"), "w") as f:
            f.write("local n = 34\nprint('matching')\n"
                    "local r = string.rep('a', n):match(string.rep('a?', n) .. string.rep('a', n))")
        server = PacsServer(workdir, ini={"ImportConverters": "1", "ImportConverter0": "lua:stuck.lua",
                                          "QuitGracePeriod": "2"})
        server.start()
        self.addCleanup(server.stop)
        ds = makeDataset("STUCK", "Doe^John", generate_uid(), generate_uid(), generate_uid(), 1, 1, rows=8, columns=8)
        path = os.path.join(workdir, "stuck.dcm")
        ds.save_as(path, enforce_file_format=True)
        sender = subprocess.Popen([dcmtkTool("storescu"), "127.0.0.1", str(server.port), "-aec", server.ae, path],
                                  env=dcmtkEnvironment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(sender.wait)
        self.addCleanup(sender.kill)
        waitFor(lambda: "ImportConverter0: matching" in server.log(), message="the script matching")
        started = time.monotonic()
        server.stop(timeout=20)
        self.assertLess(time.monotonic() - started, 2 + 8)
