"""Wall-clock slack for the tests' time limits, in one place.

A time limit in a test checks that something is *bounded* (by
``GUNICORN_OTEL_SHUTDOWN_TIMEOUT``, by a deadline, by not waiting on a
collector), not how fast it is: figures belong in ``bench/``.  What a test
measures also holds time that is not ours, so each limit is the bound under
test plus one of these, each still well below what the unbounded case costs
(named next to each use):

* Gunicorn's own stop: about 1.5 s for two workers with no telemetry at all
  (the arbiter's sleep between checks, the workers' graceful exit);
* a CI machine with 2 cores shared with other test runs: a process can wait
  a second or more for a core, and the limits below flaked at 2.5 s of stop
  slack, 4 s of start slack, and under 1 s with no slack.

Where a whole stop is timed with ``STOP``, the test also checks each
worker's own flush time (``GunicornProcess.flush_times``, logged by the
worker) against the bound plus ``BUSY``: that part is ours and stays tight.
"""

# Added to a shutdown bound when a whole Gunicorn stop is timed: Gunicorn's own
# ~1.5 s plus a loaded machine.  With a 2 s bound, stops beyond the 2 s flush took
# 1-2.5 s at load average 11 and up to 5.8 s at 17; unbounded stops take 10 s or more.
STOP = 5.0

# Added to a limit under 1 s (a request answered, an exit that must not
# wait): one scheduling delay on a loaded machine.
BUSY = 1.0

# Added when the time measured includes starting an interpreter that imports
# FastAPI and the SDK, on a loaded machine.
START = 5.0
