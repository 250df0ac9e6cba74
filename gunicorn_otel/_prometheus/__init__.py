"""The Prometheus endpoint of one Gunicorn master.

* ``snapshot``: the file format workers and the master write, and how (atomically).
* ``store``: the directory the endpoint reads: liveness, compaction of what
  exited workers leave behind, and the merge a scrape returns.
* ``__main__``: the serving process (``python -m gunicorn_otel._prometheus``).

``snapshot`` and ``store`` use only the standard library: the master and
every worker import them.  Design and fork-safety reasoning: docs/prometheus.md.
"""
