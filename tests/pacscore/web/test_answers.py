"""Tests for pacscore.web.answers."""

from twisted.trial import unittest

from pacscore.web.answers import htmlAnswer


class HtmlAnswerTests(unittest.TestCase):

    def test_loneSurrogate(self):
        """Text holding a lone surrogate (bytes that were not UTF-8, kept
        by surrogateescape: a file name, say) is shown with a replacement
        character rather than failing the page with a 500."""
        answer = htmlAnswer("Configuration", "H\udcf4pital")
        self.assertIn(b"H?pital", answer.body)
