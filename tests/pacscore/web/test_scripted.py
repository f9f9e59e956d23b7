"""Tests for pacscore.web.scripted: dicom.ini sections as web pages, with
the manual's own sample.cq and [sample2]."""

import os
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, urlsplit

from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent

from pacscore.config.loader import loadConfiguration
from pacscore.control.configuration import ReadIni
from pacscore.control.data import AddImageFile
from pacscore.control.queries import Query2
from pacscore.control.registry import CommandRegistry
from pacscore.testing.corpus import makeDataset
from pacscore.web.scripted import MAX_LINES, ScriptedPages
from pacscore.web.site import DgateResource
from tests.pacscore.web.pages import WebTestCase, answered, dgate, get, getRequest

# appendix 5 of Conquest's manual
SAMPLE_CQ = """<HEAD><TITLE>Conquest DICOM server - %variable%</TITLE></HEAD>
<BODY BGCOLOR='CFDFCF'>
<H2>Conquest DICOM server - %variable%</H2>

<BR>
#this is equivalent to: dgate "--display_status:"
#where the output is sent to the web page (unquoted)
<listing>
--display_status:
</listing>

<hr>
#the format parameter of the dgate -- command is used to create HTML tags
--get_amaps:<br>%s <strong>%s %s</strong>

<hr>
#example of database query
--query2:DICOMPatients|PatientID||<br>%s|10

</BODY>
"""

SAMPLE_LUA = """HTML('Content-type: text/html\\nCache-Control: no-cache\\n')
HTML('<H1>Welcome to %s, version %s</H1>', Global.MyACRNema, version)
local rows = dbquery('DICOMPatients', 'PatientID', "PatientID like 'PAT%'")
HTML('<p>%d patients, first %s</p>', #rows, rows[1][1])
print('<p>mode=' .. mode .. ' patient=' .. CGI('patient') .. ' missing=' .. CGI('missing', 'none')
      .. ' graphic=' .. gpps('webdefaults', 'graphic', '?') .. '</p>')
print('<pre>' .. servercommand('display_status:') .. '</pre>')
local out, err = servercommand('nosuch:')
print('<p>' .. tostring(out) .. ' ' .. tostring(err) .. '</p>')
print(servercommand('query:DICOMPatients|PatientID||<td>%s</td>'))
"""

SECTIONS = """
[sample]
source    = sample.cq
variable  = sample 1

[sample2]
variable  = sample 2
line0     = <HEAD><TITLE>Conquest DICOM server - %variable%</TITLE></HEAD>
line1     = <BODY BGCOLOR='CFDFCF'>
line2     = <H2>Conquest DICOM server - %variable%</H2>
line3     = </BODY>
header    = Content-type: text/html\\Cache-Control: no-cache\\

[patients]
line0     = <ul>
line1     = --query2:DICOMPatients|PatientID,PatientName|PatientID like '%patid%'|<li>%s %s</li>|5
line2     = </ul>
line3     = %s%s stays

[lua]
source    = page.lua

[inipage]
line0     = --get_ini:%s = %s<br>
line1     = --get_ini_num:%index%
line2     = --get_param:%key%

[missing]
source    = nothere.cq
line0     = from the lines
"""


class TagsOf(HTMLParser):
    """The tags of an HTML text as a browser parses them: ``attributes``
    [(tag, [(name, value)])], ``text`` the text of the ``a`` elements."""

    def __init__(self, html):
        super().__init__()
        self.attributes, self.text, self.inLink = [], [], False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.attributes.append((tag, attrs))
        self.inLink = tag == "a"

    def handle_endtag(self, tag):
        self.inLink = False

    def handle_data(self, data):
        if self.inLink:
            self.text.append(data)


class Hanging:
    """A control command ``hang`` that never answers; counts its cancels."""

    name = "hang"
    usage = "--hang:  never answers"
    readOnly = True

    def __init__(self):
        self.cancelled = 0

    def run(self, arguments, context):
        return defer.Deferred(lambda d: setattr(self, "cancelled", self.cancelled + 1))


class ScriptedPageTests(WebTestCase):

    ae = "SCRIPTED"
    corpusShape = {"patients": 2, "studiesPerPatient": 1, "seriesPerStudy": 1, "imagesPerSeries": 1}

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.resource = self.resourceWith(SECTIONS)

    def resourceWith(self, sections):
        workdir = self.running.workdir
        with open(os.path.join(workdir, "sample.cq"), "w") as f:
            f.write(SAMPLE_CQ)
        with open(os.path.join(workdir, "dicom.ini"), "a") as f:
            f.write(sections)
        configuration = loadConfiguration(workdir, workdir)
        return DgateResource(self.running.archive, ScriptedPages(configuration, CommandRegistry()))

    def resourceWithSources(self, **sources):
        """The resource whose page NAME shows its source NAME.cq, which
        holds the bytes given for NAME."""
        for name, data in sources.items():
            with open(os.path.join(self.running.workdir, f"{name}.cq"), "wb") as f:
                f.write(data)
        return self.resourceWith("".join(f"[{name}]\nsource = {name}.cq\n" for name in sources))

    @defer.inlineCallbacks
    def test_manualSample(self):
        page = yield get(self.resource, mode="sample")
        self.assertEqual((page.code, page.headers["content-type"]), (200, "text/html; charset=utf-8"))
        self.assertIn("<H2>Conquest DICOM server - sample&#32;1</H2>", page.text)
        self.assertIn("DICOM server 'SCRIPTED' (pacs, port", page.text)
        self.assertIn("<br>PAT0000\n<br>PAT0001", page.text)
        self.assertRegex(page.text, r"<br>\S+ <strong>\S+ \d+</strong>")
        self.assertNotIn("#this is equivalent", page.text)
        overridden = yield get(self.resource, mode="sample", variable="<script>alert(1)</script>")
        self.assertIn("server - &lt;script&gt;alert(1)&lt;/script&gt;</H2>", overridden.text)

    @defer.inlineCallbacks
    def test_lines(self):
        page = yield get(self.resource, mode="sample2")
        self.assertEqual(page.text.splitlines(), [
            "<HEAD><TITLE>Conquest DICOM server - sample&#32;2</TITLE></HEAD>", "<BODY BGCOLOR='CFDFCF'>",
            "<H2>Conquest DICOM server - sample&#32;2</H2>", "</BODY>"])
        self.assertEqual(page.headers["cache-control"], "no-cache")
        missing = yield get(self.resource, mode="missing")
        self.assertEqual(missing.text, "from the lines\n")

    @defer.inlineCallbacks
    def test_commandVariables(self):
        page = yield get(self.resource, mode="patients", patid="PAT0001")
        self.assertIn("<li>PAT0001 Test^Patient1</li>", page.text)
        self.assertNotIn("PAT0000", page.text)
        self.assertIn("%s%s stays", page.text)
        for unsafe in ("x' or '1'='1", "a|b", "a;b", "a,b", "a\nb"):
            refused = yield get(self.resource, mode="patients", patid=unsafe)
            self.assertEqual(refused.code, 400, unsafe)
            self.assertIn("cannot go into a command", refused.text)

    @defer.inlineCallbacks
    def test_listedValuesEscaped(self):
        """A patient name from DICOM data that holds HTML is escaped into
        the page author's format, which stays HTML, with a format or
        without; the control port's output (dgate's) and a file keep it as
        it is."""
        name = "<script>alert(1)</script>"
        ds = makeDataset("XSS1", name, "1.2.826.0.1.3680043.8.498.9", "1.2.826.0.1.3680043.8.498.9.1",
                         "1.2.826.0.1.3680043.8.498.9.1.1", 1, 1)
        path = os.path.join(self.running.workdir, "xss.dcm")
        ds.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        resource = self.resourceWith("[xss]\nline0 = --query2:DICOMPatients|PatientID,PatientName|"
                                     "PatientID = 'XSS1'|<br>%s %s\n"
                                     "line1 = --query:DICOMPatients|PatientName|PatientID = 'XSS1'\n"
                                     "line2 = --query:DICOMPatients|PatientName|PatientID = 'XSS1'|%s|listed.txt\n")
        page = yield get(resource, mode="xss")
        self.assertEqual(page.text.splitlines()[:2], ["<br>XSS1 &lt;script&gt;alert(1)&lt;/script&gt;",
                                                      "&lt;script&gt;alert(1)&lt;/script&gt;"])
        self.assertNotIn("<script>", page.text)
        with open(os.path.join(self.running.workdir, "listed.txt")) as f:
            self.assertEqual(f.read(), name + "\n")
        output = yield self.running.run(Query2(), "DICOMPatients|PatientID,PatientName|PatientID = 'XSS1'|<br>%s %s")
        self.assertEqual(output, f"<br>XSS1 {name}")

    @defer.inlineCallbacks
    def test_valuesCannotAddAttributesToUnquotedOnes(self):
        """Conquest's pages put values in unquoted attributes: a request
        value or a listed one holding spaces and ``=`` stays one attribute
        value (the whole value: percent-encoded in a link's query string,
        as character references elsewhere), adding none."""
        hostile = "a onfocus=alert(1) x='y'`z"
        ds = makeDataset(hostile, "Evil^Id", "1.2.826.0.1.3680043.8.498.7", "1.2.826.0.1.3680043.8.498.7.1",
                         "1.2.826.0.1.3680043.8.498.7.1.1", 1, 1)
        path = os.path.join(self.running.workdir, "evil.dcm")
        ds.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        resource = self.resourceWith(
            "[unquoted]\nline0 = <a href=x?p=%patid%>%patid%</a><input value=%patid%><img alt=%query%>\n"
            "line1 = --query2:DICOMPatients|PatientID,PatientName|PatientName = 'Evil^Id'|"
            "<A HREF=dgate?mode=querystudies&patientidmatch=%s>%s</A><option value=%0.0s%s>\n")
        page = yield get(resource, mode="unquoted", patid=hostile, query="b b=c\t\n\x0c\r")
        tags = TagsOf(page.text)
        self.assertEqual(tags.attributes, [
            ("a", [("href", "x?p=" + quote(hostile, safe=":"))]), ("input", [("value", hostile)]),
            ("img", [("alt", "b b=c\t\n\x0c\r")]),
            ("a", [("href", "dgate?mode=querystudies&patientidmatch=" + quote(hostile, safe=":"))]),
            ("option", [("value", "Evil^Id")])])
        self.assertEqual(tags.text, [hostile, "Evil^Id"])
        self.assertEqual(parse_qs(urlsplit(tags.attributes[3][1][0][1]).query)["patientidmatch"], [hostile])

    @defer.inlineCallbacks
    def test_requestValuesInACommandsFormatAddNoAttributes(self):
        """A request value that lands in a command line's format (the
        page's HTML) is made inert there as in any other line, and its
        ``%`` is no conversion; in the command's other fields it goes in as
        it is (the series are found by the study's UID)."""
        image = self.corpus[0]
        hostile = "x autofocus onfocus=document.title=1 x<img src=x onerror=y>%41%s"
        resource = self.resourceWith(
            "[cmdfmt]\nline0 = --query2:DICOMSeries|SeriesInst|StudyInsta = '%studyuid%'|"
            "<A HREF=dgate?mode=queryimages&series=%patid%:%s>images of %patid%</A>|\n")
        page = yield get(resource, mode="cmdfmt", study=f"{hostile}:{image.studyUID}")
        tags = TagsOf(page.text)
        self.assertEqual(tags.attributes, [
            ("a", [("href", f"dgate?mode=queryimages&series={quote(hostile, safe=':')}:{image.seriesUID}")])])
        self.assertEqual(tags.text, [f"images of {hostile}"])

    @defer.inlineCallbacks
    def test_urlReadyVariablesInACommandsFormat(self):
        """%patid2% and %webscriptadress% in a command line's format (the
        [flexviewer] sample's image URLs) go in as they are, their ``%``
        no conversion, the address the script's, without the path after it."""
        series, sop = yield self.storedAs("A B&C+1")
        resource = self.resourceWith(
            "[flex]\nline0 = --imagelister:local|%patid%|%seruid%|:<a href=%webscriptadress%?%extra%&mode=dicom"
            "&patid=%patid2%&slice=%s:%s>img</a>*\n")
        request = getRequest({"mode": "flex", "series": f"A B&C+1:{series}"})
        request.uri = request.path = b"/cgi-bin/dgate/x%20y"
        request.postpath = [b"x y"]
        page = yield answered(resource, request)
        port = self.running.archive.tcpPort
        self.assertEqual(page.text, f"<a href=/cgi-bin/dgate?port={port}&address=127.0.0.1&mode=dicom"
                                    f"&patid=A%20B%26C%2B1&slice=A%20B%26C%2B1:{sop}>img</a>\n")

    @defer.inlineCallbacks
    def test_sectionKeysInACommandsFormatAreNoConversion(self):
        """A section's own key in a command line's format has its ``%``
        doubled, as every value there: ``width = 100%`` and a URL with a
        ``%20`` are written as they are, not read as conversions."""
        image = self.corpus[0]
        page = yield get(self.resourceWith(
            "[sk]\nbase = http://viewer.example/a%20b/view\nwidth = 100%\n"
            f"line0 = --query2:DICOMPatients|PatientID|PatientID = '{image.patientID}'|<a href=%base%?p=%s>view</a>\n"
            f"line1 = --query2:DICOMPatients|PatientID|PatientID = '{image.patientID}'|<td width=%width%>%s</td>\n"),
            mode="sk")
        self.assertEqual(page.text.splitlines(), [
            f"<a href=http://viewer.example/a%20b/view?p={image.patientID}>view</a>",
            f"<td width=100%>{image.patientID}</td>"])

    @defer.inlineCallbacks
    def storedAs(self, patientID, n=8):
        """The series UID and SOP Instance UID of an image stored with ``patientID``."""
        root = f"1.2.826.0.1.3680043.8.498.{n}"
        ds = makeDataset(patientID, "Spaced^Id", root, f"{root}.1", f"{root}.1.1", 1, 1)
        path = os.path.join(self.running.workdir, f"stored{n}.dcm")
        ds.save_as(path, enforce_file_format=True)
        yield self.running.run(AddImageFile(), path)
        return f"{root}.1", f"{root}.1.1"

    @defer.inlineCallbacks
    def test_imageListerLinksOfAPatientIDWithASpace(self):
        """The imagelister's ':' rows write the patient ID URL-ready (its
        spaces %20, as Conquest's): in a link it is encoded once, not
        again (a %2520 would name another patient)."""
        series, sop = yield self.storedAs("A B")
        page = yield get(self.resourceWith(
            "[ilist]\nline0 = --imagelister:local|%patid%|%seruid%|:<a href=dgate?mode=slicepage&slice=%s:%s>img</a>*\n"),
            mode="ilist", series=f"A B:{series}")
        self.assertEqual(page.text, f"<a href=dgate?mode=slicepage&slice=A%20B:{sop}>img</a>\n")
        self.assertEqual(parse_qs(urlsplit(TagsOf(page.text).attributes[0][1][0][1]).query)["slice"], [f"A B:{sop}"])

    @defer.inlineCallbacks
    def test_conquestsViewerVariables(self):
        """The variables Conquest's viewer pages build their URLs of
        (imagejaviewer.cq, launchWeasis.cq, the [flexviewer] sample): all
        filled in, from WebScriptAddress when dicom.ini has it, the
        --imagelister line making one slice URL per image."""
        image = self.corpus[0]
        series = f"{image.patientID}:{image.seriesUID}"
        lines = ("[viewer]\nline0 = <select name=slice>\n"
                 "line1 = --imagelister:local|%patid%|%seruid%|:<option value=%s:%s>slice %s</option>\n"
                 "line2 = </select><script>var slice = '%webscriptadress%?%extra%&mode=dicom&slice=';\n"
                 "line3 = var stack = '%server%&mode=imagelisturls&series=%series2%&patid=%patid2%';</script>\n"
                 "line4 = <applet codebase=%webcodebase%viewer><param name=imgURL0 value=\n"
                 "line5 = --imagelister:local|%patid%|%seruid%|:%webscriptadress%?%extra%&mode=dicom&slice=%s:%s"
                 "&compress=un*\n"
                 "line6 = ></applet>%uploadedfile%%path_translated%\n")
        page = yield get(self.resourceWith(lines), mode="viewer", series=series)
        port = self.running.archive.tcpPort
        self.assertEqual(page.text.splitlines(), [
            "<select name=slice>", f"<option value={image.patientID}:{image.sopUID}>slice 0</option>",
            f"</select><script>var slice = '/cgi-bin/dgate?port={port}&address=127.0.0.1&mode=dicom&slice=';",
            f"var stack = '/cgi-bin/dgate?port={port}&address=127.0.0.1&mode=imagelisturls&series={series}"
            f"&patid={image.patientID}';</script>",
            "<applet codebase=/viewer><param name=imgURL0 value=",
            f"/cgi-bin/dgate?port={port}&address=127.0.0.1&mode=dicom&slice={image.patientID}:{image.sopUID}"
            "&compress=un", "></applet>"])
        spaced = yield get(self.resourceWith("[sscscp]\nWebScriptAddress = http://pacs.example/cgi-bin/dgate.exe\n"
                                             "[spaced]\nline0 = %webscriptadress% %webcodebase% %server%\n"
                                             "line1 = %series2% %patid2% %patid%\n"),
                           mode="spaced", series="A B&C:1.2")
        self.assertEqual(spaced.text.splitlines(), [
            f"http://pacs.example/cgi-bin/dgate.exe http://pacs.example/ "
            f"http://pacs.example/cgi-bin/dgate.exe?port={port}&address=127.0.0.1",
            "A%20B%26C:1.2 A%20B%26C A&#32;B&amp;C"])
        series, sop = yield self.storedAs("A B&C+1")
        applet = yield get(self.resourceWith(
            "[applet]\nline0 = <applet code=x><param name=imgURL0 value=\n"
            "line1 = --imagelister:local|%patid%|%seruid%|:dgate?mode=dicom&slice=%s:%s&compress=un*\n"
            "line2 = --imagelister:local|%patid%|%seruid%|:<option value=%-9.5s>\n"),
            mode="applet", series=f"A B&C+1:{series}")
        self.assertEqual(applet.text.splitlines(), [
            "<applet code=x><param name=imgURL0 value=", f"dgate?mode=dicom&slice=A%20B%26C%2B1:{sop}&compress=un",
            "<option value=A%20B%26C%20%20%20%20>"])

    @defer.inlineCallbacks
    def test_luaPageVariablesHonourWebScriptAddress(self):
        with open(os.path.join(self.running.workdir, "vars.lua"), "w") as f:
            f.write("print('at ' .. webscriptaddress .. ' ' .. webscriptadress .. ' ' .. extra .. ' ' .. webcodebase"
                    " .. ' ' .. series2)\n")
        resource = self.resourceWith("[sscscp]\nWebScriptAddress = http://pacs.example/cgi-bin/dgate.exe\n"
                                     "[luavars]\nsource = vars.lua\n")
        page = yield get(resource, mode="luavars", series="A B:1.2")
        self.assertEqual(page.text, "at http://pacs.example/cgi-bin/dgate.exe http://pacs.example/cgi-bin/dgate.exe "
                                    f"port={self.running.archive.tcpPort}&address=127.0.0.1 http://pacs.example/ "
                                    "A%20B:1.2\n")

    @defer.inlineCallbacks
    def test_failingCommandIsLogged(self):
        resource = self.resourceWith("[failing]\nline0 = --imagelister:local|||:%nosuch%&slice=%s*\n")
        with capturedLogs() as events:
            page = yield get(resource, mode="failing")
        self.assertIn("<p>--imagelister failed: bad format", page.text)
        self.assertIn("web page [failing]: --imagelister failed: bad format ':%nosuch%&slice=%s*'",
                      [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn][0])

    @defer.inlineCallbacks
    def test_requestVariables(self):
        resource = self.resourceWith("[vars]\nline0 = mode=%mode% series=%seruid% patient=%patid% "
                                     "size=%size% graphic=%graphic%\n")
        page = yield get(resource, mode="vars", series="PAT0000:1.2.3", size="64")
        self.assertEqual(page.text, "mode=vars series=1.2.3 patient=PAT0000 size=64 graphic=jpg\n")

    @defer.inlineCallbacks
    def test_failingAndUnknownCommands(self):
        resource = self.resourceWith("[cmds]\nline0 = --nosuchcommand:x\nline1 = --query:NotATable|a||\n")
        page = yield get(resource, mode="cmds")
        self.assertIn("unknown command --nosuchcommand", page.text)
        self.assertIn("--query failed: table &#x27;NotATable&#x27; is not an index table", page.text)

    @defer.inlineCallbacks
    def test_lua(self):
        """A Lua page in the manner of Conquest's sample3.lua."""
        with open(os.path.join(self.running.workdir, "page.lua"), "w") as f:
            f.write(SAMPLE_LUA)
        page = yield get(self.resource, mode="lua", patient="<b>P1</b>")
        self.assertEqual((page.code, page.headers["content-type"], page.headers["cache-control"]),
                         (200, "text/html; charset=utf-8", "no-cache"))
        lines = page.text.splitlines()
        self.assertEqual(lines[0], "<H1>Welcome to SCRIPTED, version pacs</H1>")
        self.assertIn("<p>2 patients, first PAT0000</p>", lines)
        self.assertIn("<p>mode=lua patient=<b>P1</b> missing=none graphic=jpg</p>", lines)
        self.assertIn("<p>nil nosuch:: unknown command --nosuch</p>", lines)
        self.assertIn("DICOM server 'SCRIPTED' (pacs, port", page.text)
        self.assertIn("<td>PAT0001</td>", page.text)

    @defer.inlineCallbacks
    def test_luaFailures(self):
        """Sandboxed as Lua converters are; a failing script is a 500 naming its error."""
        for script, why in (("os.execute('true')", "attempt to call a nil value (field &#x27;execute&#x27;)"),
                            ("while true do end", "script stopped after 1000 instructions"),
                            ("print(dbquery('NoTable', 'x'))", "&#x27;NoTable&#x27; is not one of the index tables")):
            with open(os.path.join(self.running.workdir, "page.lua"), "w") as f:
                f.write(script)
            self.running.configuration.ini.set("LuaMaxInstructions", "1000")
            page = yield get(self.resource, mode="lua")
            self.assertEqual(page.code, 500, page.text)
            self.assertIn(why, page.text)
        os.remove(os.path.join(self.running.workdir, "page.lua"))
        missing = yield get(self.resource, mode="lua")
        self.assertEqual(missing.code, 404)
        self.assertNotIn(self.running.workdir, missing.text)

    @defer.inlineCallbacks
    def test_luaSandboxKeepsSecrets(self):
        """A sandboxed page cannot switch its sandbox off (servercommand runs
        read-only commands only) nor read dicom.ini's secrets; an unsafe one can."""
        ini = self.running.archive.configuration.ini
        ini.set("ControlSecret", "s3cret")
        with open(os.path.join(self.running.workdir, "page.lua"), "w") as f:
            f.write("print(Global.ControlSecret, gpps('sscscp', 'ControlSecret', 'hidden'), "
                    "servercommand('get_param:MyACRNema'), servercommand('put_param:LuaAllowUnsafe,1'))")
        page = yield get(self.resource, mode="lua")
        self.assertEqual(page.text, "nil\thidden\tSCRIPTED\tnil\tput_param:LuaAllowUnsafe,1: --put_param failed: "
                                    "sandboxed Lua scripts run only commands that change nothing "
                                    "(LuaAllowUnsafe = 1 allows every one)\n")
        self.assertIsNone(ini.get("LuaAllowUnsafe"))
        ini.set("LuaAllowUnsafe", "1")
        page = yield get(self.resource, mode="lua")
        self.assertEqual(page.text, "s3cret\ts3cret\tSCRIPTED\t\n")
        self.assertEqual(ini.get("LuaAllowUnsafe"), "1")

    @defer.inlineCallbacks
    def test_commandsKeepSecrets(self):
        """A page's command lines, as manual's sample.cq writes them, show
        dicom.ini as showconfig does: no secret, no password."""
        ini = self.running.archive.configuration.ini
        ini.set("ControlSecret", "s3cret")
        ini.set("Password", "dbpass")
        secrets = ("s3cret", "dbpass")
        for key in ("ControlSecret", "Password"):
            page = yield get(self.resource, mode="inipage", key=key, index="0")
            self.assertIn("MyACRNema = SCRIPTED<br>", page.text)
            self.assertIn(f"<p>--get_param failed: {key} is a secret: web pages cannot read it</p>", page.text)
            self.assertFalse([secret for secret in secrets if secret in page.text], page.text)
        pages = yield defer.gatherResults([get(self.resource, mode="inipage", key="MyACRNema", index=str(index))
                                           for index in range(len(ini.items()))])
        self.assertFalse([page.text for page in pages for secret in secrets if secret in page.text])

    @defer.inlineCallbacks
    def test_starSource(self):
        """``*`` in a source stands for the mode, which must then be a plain name."""
        with open(os.path.join(self.running.workdir, "hello.cq"), "w") as f:
            f.write("hello from %mode%\n")
        resource = self.resourceWith("[DefaultPage]\nsource = *.cq\n")
        self.assertEqual((yield get(resource, mode="hello")).text, "hello from hello\n")
        for bad in ("../hello", "hello.cq/..", "a b"):
            page = yield get(resource, mode=bad)
            self.assertEqual(page.code, 400, bad)
            self.assertIn("is not a page name", page.text)

    @defer.inlineCallbacks
    def test_sourceReadAsEveryConfigurationFile(self):
        """A source saved as "ANSI" (cp1252, as Conquest's pages written on
        Windows are) shows its letters, with one warning naming the file and
        line (it showed U+FFFD for each, silently); a UTF-8 one as it is."""
        path = os.path.join(self.running.workdir, "ansi.cq")
        resource = self.resourceWithSources(ansi=b"<p>Bienvenue \xe0 l'h\xf4pital</p>\n",
                                            utf8="<p>\u533b\u9662 \u00e0 l'h\u00f4pital</p>\n".encode())
        for first in (True, False):  # warned of once
            with capturedLogs() as events:
                ansi = yield get(resource, mode="ansi")
                utf8 = yield get(resource, mode="utf8")
            self.assertEqual((ansi.text, utf8.text), ("<p>Bienvenue \u00e0 l'h\u00f4pital</p>\n",
                                                      "<p>\u533b\u9662 \u00e0 l'h\u00f4pital</p>\n"))
            self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn],
                             [f'{path}:1: not UTF-8: the line is read as Windows\' cp1252 ("ANSI")']
                             if first else [])

    @defer.inlineCallbacks
    def test_eachLineOfTheSourceIsDecodedOnItsOwn(self):
        """A UTF-8 source with a comment line saved as "ANSI" shows its
        UTF-8 letters (the whole file was read as cp1252: 'hÃ´pital'),
        with a warning naming that line; lines ending in CR alone are
        lines, as before (the source was one line)."""
        path = os.path.join(self.running.workdir, "mix.cq")
        resource = self.resourceWithSources(
            mix=b"# r\xe9vis\xe9\n" + "<p>Bienvenue \u00e0 l'h\u00f4pital \u533b\u9662</p>\n".encode(),
            cr=b"<p>one</p>\r# a comment\r<p>two</p>\r")
        with capturedLogs() as events:
            mixed = yield get(resource, mode="mix")
            cr = yield get(resource, mode="cr")
        self.assertEqual((mixed.text, cr.text), ("<p>Bienvenue \u00e0 l'h\u00f4pital \u533b\u9662</p>\n",
                                                 "<p>one</p>\n<p>two</p>\n"))
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn],
                         [f'{path}:1: not UTF-8: the line is read as Windows\' cp1252 ("ANSI")'])

    @defer.inlineCallbacks
    def test_onlyTheLinesShownAreRead(self):
        """A source is read up to its MAX_LINES-th line, as before: a line
        after it saved as "ANSI" matters not (the whole file was read, on
        every request, and that line made the page show 'PremiÃ¨re' and
        logged a warning naming a line never shown)."""
        resource = self.resourceWithSources(
            big="<p>Premi\u00e8re ligne, \u533b\u9662</p>\n".encode() + b"x\n" * (MAX_LINES - 1) + b"\xe9\n")
        with capturedLogs() as events:
            page = yield get(resource, mode="big")
        self.assertEqual(page.text.split("\n")[:2], ["<p>Premi\u00e8re ligne, \u533b\u9662</p>", "x"])
        self.assertEqual(page.text.count("\n"), MAX_LINES)
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn], [])

    @defer.inlineCallbacks
    def test_anyAndDefaultPages(self):
        resource = self.resourceWith("[DefaultPage]\nline0 = default for %mode%\n")
        unknown = yield get(resource, mode="whatever")
        self.assertEqual(unknown.text, "default for whatever\n")
        builtIn = yield get(resource, mode="querypatients")
        self.assertIn("<caption>2 patients</caption>", builtIn.text)
        resource = self.resourceWith("[AnyPage]\nline0 = any %mode%\nexceptions = querypatients,sample\n")
        self.assertEqual((yield get(resource, mode="top")).text, "any top\n")
        self.assertIn("<caption>2 patients</caption>", (yield get(resource, mode="querypatients")).text)
        self.assertIn("sample&#32;1", (yield get(resource, mode="sample")).text)

    @defer.inlineCallbacks
    def test_readIniChangesPages(self):
        """A page added to dicom.ini and --read_ini: is there at the next request."""
        resource = dgate(self.running)
        self.assertEqual((yield get(resource, mode="later")).code, 404)
        with open(os.path.join(self.running.workdir, "dicom.ini"), "a") as f:
            f.write("\n[later]\nline0 = added later, graphic %graphic%\n")
        yield self.running.run(ReadIni())
        self.assertEqual((yield get(resource, mode="later")).text, "added later, graphic jpg\n")

    @defer.inlineCallbacks
    def test_hangingCommandTimesOut(self):
        """A page's servercommand waits as a Lua converter's does: at most
        LuaCommandTimeout seconds, then it is cancelled and the page told."""
        hanging = Hanging()
        workdir = self.running.workdir
        with open(os.path.join(workdir, "page.lua"), "w") as f:
            f.write("print(servercommand('hang:x'))\n")
        with open(os.path.join(workdir, "dicom.ini"), "a") as f:
            f.write(SECTIONS)
        resource = DgateResource(self.running.archive,
                                 ScriptedPages(loadConfiguration(workdir, workdir), CommandRegistry([hanging])))
        self.running.archive.converterServices.serverCommands.timeout = 0.2
        page = yield get(resource, mode="lua")
        self.assertEqual((page.code, page.text),
                         (200, "nil\thang:x: not finished within 0.2 s (LuaCommandTimeout); it may still end as asked\n"))
        self.assertEqual(hanging.cancelled, 1)

    @defer.inlineCallbacks
    def test_manyLuaPagesAtOnce(self):
        """More Lua pages at once than the I/O pool has threads, each asking
        for a command that needs that pool: all are answered."""
        with open(os.path.join(self.running.workdir, "page.lua"), "w") as f:
            f.write("print(servercommand('display_status:'))\n")
        pages = yield defer.gatherResults([get(self.resource, mode="lua") for _ in range(8)])
        self.assertEqual({page.code for page in pages}, {200})
        self.assertTrue(all("DICOM server 'SCRIPTED'" in page.text for page in pages))
