"""Tests for pacscore.web.answers."""

from twisted.trial import unittest

from pacscore.web.answers import Parameters, WebError, htmlAnswer, queryArgs


class HtmlAnswerTests(unittest.TestCase):

    def test_loneSurrogate(self):
        """Text holding a lone surrogate (bytes that were not UTF-8, kept
        by surrogateescape: a file name, say) is shown with a replacement
        character rather than failing the page with a 500."""
        answer = htmlAnswer("Configuration", "H\udcf4pital")
        self.assertIn(b"H?pital", answer.body)


class QueryArgsTests(unittest.TestCase):

    def test_splitAtAmpersandAlone(self):
        """A query is split at ``&`` alone (a ``;`` is part of a value),
        %-escapes and ``+`` read as a URL's are, each byte kept as it is
        (UTF-8 or not, escaped or raw), blank values and a name without
        ``=`` kept (as Conquest's CGI keeps it), empty items dropped."""
        self.assertEqual(queryArgs(b"/cgi-bin/dgate?contentType=image/png;q=0,image/jpeg&flag&a=&a=x+y%2B%26%3D"
                                   b"&n=M%C3%BCller&l=M%FCller&r=M\xc3\xbcller&&=v&%62=1"),
                         {b"contentType": [b"image/png;q=0,image/jpeg"], b"flag": [b""], b"a": [b"", b"x y+&="],
                          b"n": [b"M\xc3\xbcller"], b"l": [b"M\xfcller"], b"r": [b"M\xc3\xbcller"], b"": [b"v"],
                          b"b": [b"1"]})
        self.assertEqual((queryArgs(b"/dicom-web/studies"), queryArgs(b"/x?"), queryArgs(b"/x?&")), ({}, {}, {}))

    def test_notUTF8IsRefusedWhenAskedFor(self):
        parameters = Parameters(queryArgs(b"/cgi-bin/dgate?mode=querypatients&patientnamematch=M%FCller"))
        self.assertEqual(parameters.get("mode"), "querypatients")
        error = self.assertRaises(WebError, parameters.get, "patientnamematch")
        self.assertEqual((error.code, error.message), (400, "the parameter patientnamematch must be UTF-8 text"))
