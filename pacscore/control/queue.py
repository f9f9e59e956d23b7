"""Control commands on the export and forward queue: ``--forwardqueue:`` shows
its depths and failed items, ``--retryforwards[:AE]`` puts failed items back.

Both work on ``archive.exportQueue``: the listing reads in a worker thread,
the retry writes through the index writer; the running export service picks
the changes up at its next poll.
"""

from pacscore.control.arguments import ControlCommand


def describeQueue(queue):
    """Depths per state and destination, then the failed items (blocking)."""
    counts = queue.counts()
    jobs = counts["jobs"]
    lines = [f"export jobs: {jobs.get('pending', 0)} pending, {jobs.get('failed', 0)} failed"]
    for destination, states in sorted(counts["destinations"].items(), key=lambda item: item[0] or ""):
        lines.append(f"{destination or '(local)'}: {states.get('pending', 0)} pending, "
                     f"{states.get('failed', 0)} failed")
    for action, error in queue.failedActions():
        lines.append(f"failed: #{action.id} {action.action} {action.level} to {action.destination or '-'} "
                     f"after {action.attempts} attempts: {error}")
    return "\n".join(lines)


class ForwardQueue(ControlCommand):
    name = "forwardqueue"
    usage = "--forwardqueue:  Show the export/forward queue and its failed items"
    readOnly = True

    def run(self, arguments, context):
        archive = context.archive
        return archive.workers.deferToWorker(describeQueue, archive.exportQueue)


class RetryForwards(ControlCommand):
    name = "retryforwards"
    usage = "--retryforwards:AE  Put the failed forwards (to AE; none: all, export jobs too) back in the queue"

    def run(self, arguments, context):
        archive = context.archive
        retried = archive.exportQueue.retryFailed(arguments.strip() or None)
        return retried.addCallback(lambda count: f"{count} failed item(s) put back in the queue")
