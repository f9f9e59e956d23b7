"""Tests for pacscore.web.crossorigin: which requests a browser sent for a
page of another origin, as Chromium, Firefox and older browsers label them."""

from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from pacscore.web.answers import WebError
from pacscore.web.crossorigin import refuseCrossOrigin


def request(method=b"POST", **headers):
    made = DummyRequest([b""])
    made.method = method
    for name, value in headers.items():
        made.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    return made


class CrossOriginTests(unittest.TestCase):

    def refusal(self, made):
        with self.assertRaises(WebError) as raised:
            refuseCrossOrigin(made)
        self.assertEqual(raised.exception.code, 403)
        return raised.exception.message

    def test_browsersOfTodaySayTheSite(self):
        for site in ("same-origin", "none", "Same-Origin"):
            refuseCrossOrigin(request(sec_fetch_site=site, origin="http://elsewhere.example", host="pacs:8086"))
        for site in ("cross-site", "same-site"):
            self.assertEqual(self.refusal(request(sec_fetch_site=site, origin="http://pacs:8086", host="pacs:8086")),
                             f"a page of another site may not change the archive (Sec-Fetch-Site: {site})")

    def test_olderBrowsersTheOrigin(self):
        refuseCrossOrigin(request(origin="http://pacs.example:8086", host="PACS.example:8086"))
        refuseCrossOrigin(request(origin="https://pacs.example", host="pacs.example"))  # behind a TLS proxy
        for origin in ("http://evil.example", "http://pacs.example:8087", "null"):
            self.assertEqual(self.refusal(request(origin=origin, host="pacs.example:8086")),
                             f"a page of another origin may not change the archive (Origin: {origin})")
        self.refusal(request(origin="http://pacs.example:8086"))  # no Host: nothing to match

    def test_otherClientsAndReadsPass(self):
        refuseCrossOrigin(request(host="pacs:8086"))  # curl, scripts: neither header
        for method in (b"GET", b"HEAD", b"OPTIONS"):
            refuseCrossOrigin(request(method, sec_fetch_site="cross-site", origin="http://evil.example"))
        self.refusal(request(b"PUT", sec_fetch_site="cross-site"))
