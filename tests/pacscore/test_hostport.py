"""Unit tests of pacscore.hostport: host:port as configuration files and
log lines write it, an IPv6 address in brackets."""

from twisted.trial import unittest

from pacscore.hostport import bareIPv6Problem, bracketed, hostPort, splitHostPort, unbracketed


class SplitHostPortTests(unittest.TestCase):

    def test_hostsAndAddresses(self):
        self.assertEqual([splitHostPort(text) for text in ("ct2:104", "10.0.0.5:104", "[fd00::5]:104", " [::1]:11112 ")],
                         [("ct2", "104"), ("10.0.0.5", "104"), ("fd00::5", "104"), ("::1", "11112")])

    def test_aLinkLocalAddressWithItsZone(self):
        """``[fe80::1%eth0]:104`` is the address with its zone, which the
        connection keeps (it was no host:port: 'is not in acrnema.map')."""
        self.assertEqual(splitHostPort("[fe80::fc:ff:fe00:1%eth0]:21710"), ("fe80::fc:ff:fe00:1%eth0", "21710"))

    def test_noHostPort(self):
        self.assertEqual([splitHostPort(text) for text in ("CT2", "::1:104", "[pacs.example]:104", "[::1]",
                                                           "[fe80::1%]:104", "[fe80::1%eth 0]:104", "[fe80::1%a;b]:104",
                                                           "a:b")],
                         [None] * 8)


class BareIPv6ProblemTests(unittest.TestCase):

    def test_theBracketsItSuggestsAreAHostPort(self):
        """The spelling the refusal suggests is one splitHostPort reads, for
        an address with a zone too."""
        for address in ("::1", "fd00::2", "fe80::fc:ff:fe00:1%eth0"):
            problem = bareIPv6Problem(f"{address}:104")
            self.assertEqual(problem, f"'{address}:104' is no host:port: write an IPv6 address in brackets, "
                                      f"[{address}]:104")
            self.assertEqual(splitHostPort(problem.rsplit(" ", 1)[1]), (address, "104"))

    def test_noProblem(self):
        self.assertEqual([bareIPv6Problem(text) for text in ("CT2", "10.0.0.5:104", "[::1]:104", "ct2:104")],
                         [None] * 4)


class WrittenTests(unittest.TestCase):

    def test_hostPort(self):
        self.assertEqual([hostPort("10.0.0.5", 104), hostPort("::1", "104"), hostPort("fe80::1%eth0", 104)],
                         ["10.0.0.5:104", "[::1]:104", "[fe80::1%eth0]:104"])

    def test_bracketed(self):
        self.assertEqual([bracketed(host) for host in ("10.0.0.5", "pacs.example", "::1", "fe80::1%25eth0")],
                         ["10.0.0.5", "pacs.example", "[::1]", "[fe80::1%25eth0]"])

    def test_unbracketed(self):
        self.assertEqual([unbracketed(host) for host in ("[::1]", "[fe80::1%eth0]", "[pacs.example]", "::1", "ct2")],
                         ["::1", "fe80::1%eth0", "[pacs.example]", "::1", "ct2"])
