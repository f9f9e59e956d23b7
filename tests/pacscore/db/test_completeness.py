"""IndexCompleteness: the devices whose objects the index may miss while
a regen of them is pending or under way."""

from twisted.trial import unittest

from pacscore.db.completeness import IndexCompleteness


class IndexCompletenessTests(unittest.TestCase):

    def test_clearedMarksEndTheWaitForTheRegensNotRunning(self):
        """initializetables clears every regen mark: a regen cut short or
        failed is waited for no more, one re-entering its files now is
        until it ends.  A failed regen is said to have failed (it was still
        'under way' in the log lines of the work waiting)."""
        completeness = IndexCompleteness()
        completeness.mayMiss(["MAG1"], "a regen of it was interrupted, run again now")
        with completeness.regenerating(["MAG0"]):
            completeness.marksCleared()
            self.assertEqual(completeness.why(), "MAG0: its regen is under way")
            waiting = completeness.whenComplete()
            completeness.reentered(["MAG0"])
        self.assertTrue(waiting.called)
        with self.assertRaises(RuntimeError), completeness.regenerating(["MAG0"]):
            raise RuntimeError("the regen failed")
        self.assertEqual(completeness.why(), "MAG0: its regen failed: run it again")
        completeness.marksCleared()
        self.assertTrue(completeness.complete)
