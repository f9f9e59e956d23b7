"""The built-in control commands on the export/forward queue:
``forwardqueue`` and ``retryforwards``."""

from pacscore.control import queue

forwardQueue = queue.ForwardQueue()
retryForwards = queue.RetryForwards()
