"""Conquest's ``fmt`` argument: ``formatted``."""

from twisted.trial import unittest

from pacscore.control.context import MAX_CONVERSIONS, MAX_WIDTH, CommandError, formatted


class FormattedTests(unittest.TestCase):

    def test_templateTakesTheFirstValues(self):
        self.assertEqual(formatted("%s=%05d\\t%x", "a", 42, 255, "unused"), "a=00042\tff")
        self.assertEqual(formatted("", "a", 1), "a 1")
        self.assertEqual(formatted("100%% %s", "sure"), "100% sure")
        self.assertEqual(formatted(f"%{MAX_WIDTH}s", "a"), " " * (MAX_WIDTH - 1) + "a")

    def test_repeatedValues(self):
        self.assertEqual(formatted("<option value='%s'>%0.0s%0.0s%0.0s%s</option>", "AE", "host", "104", "un",
                                   repeat=True), "<option value='AE'>AE</option>")
        self.assertEqual(formatted("%s %s %s %s %s", 1, 2, repeat=True), "1 2 1 2 1")
        self.assertEqual(formatted("%s", 1, 2, repeat=True), "1")
        self.assertRaises(CommandError, formatted, "%s %s %s", 1, 2)
        self.assertRaises(CommandError, formatted, "%s", repeat=True)

    def test_badTemplates(self):
        for fmt in ("%d", "%s %s", "%(key)s"):
            error = self.assertRaises(CommandError, formatted, fmt, "text")
            self.assertIn(f"bad format {fmt!r}", str(error))

    def test_characterOutOfRange(self):
        for value in (2_000_000, -1):
            error = self.assertRaises(CommandError, formatted, "%c", value)
            self.assertIn("bad format '%c'", str(error))

    def test_hugeWidthsAndPrecisions(self):
        for fmt in ("%20000000s", "%.20000000f", "%-020000000d", "%20000000ld", "%%%1025s", "%s %1025s"):
            error = self.assertRaises(CommandError, formatted, fmt, 1, 2)
            self.assertIn(f"widths and precisions are at most {MAX_WIDTH}", str(error))

    def test_conversionsAreCounted(self):
        """A template has at most MAX_CONVERSIONS conversions (``%%`` not one),
        so that values taken again cannot make a small ``fmt`` a huge line."""
        self.assertEqual(formatted("%s" * MAX_CONVERSIONS + "%%", "a", repeat=True), "a" * MAX_CONVERSIONS + "%")
        error = self.assertRaises(CommandError, formatted, "%1024s" * (MAX_CONVERSIONS + 1), "a", repeat=True)
        self.assertIn(f"at most {MAX_CONVERSIONS} conversions", str(error))
