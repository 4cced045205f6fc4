"""A job's status names, shared by every target, the platform and the dashboard.

``QUEUED``: accepted by a busy platform, waiting for a worker; ``SUBMITTED``: handed to the target;
``RUNNING``; and the three final ones.
"""

QUEUED = "QUEUED"
SUBMITTED = "SUBMITTED"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"
ABORTED = "ABORTED"
ACTIVE_STATES = (QUEUED, SUBMITTED, RUNNING)
FINAL_STATES = (FINISHED, FAILED, ABORTED)
