"""The fault suite: bad days against the real broker, Redis, worker processes and receivers.

Each scenario runs real workers (``python -m processors worker``) on a sample stream and ends
with the accounting of :mod:`tests.support.accounting`: every consumed event exported,
dead-lettered or filtered; every export delivered, dead-lettered, skipped as stale or duplicate,
or held, exactly once; no older version accepted after a newer one. Its figures are written to
``accounting-<scenario>.json`` in the test's tmp dir, put in every assertion message, and
appended as one JSON line to the file named by ``QI_FAULTS_REPORT`` when it is set.

- ``test_worker_kills``: a worker SIGKILLed five times during a 10,000-event run, with
  deliveries in flight; resends are tolerated only up to one per lane task and kill (requests
  a receiver answered before the worker could record them; receivers dedupe on ``webhook-id``).
- ``test_infrastructure_outages``: the broker stopped for 20 s and started again; Redis
  stopped for 10 s and started again (the worker must survive); Redis flushed (routing must stop
  with an error logged, commit nothing past the loss and drop nothing as "not allowlisted", then
  complete once ``connections seed`` restores the configuration). These use private instances.
- ``test_group_changes``: two workers, a third joining and one leaving mid-run, with newer
  versions of the same entities published after the join: no duplicate, no stale overwrite.
- ``test_hostile_endpoints``: three tenants' endpoints answer ``429`` with ``Retry-After: 1e308``
  and ``1e9`` or drip their answer one byte a second; every other tenant's deliveries arrive,
  their retries included (the retry buffer is made small so parked records cannot hide).

Configuration is written with the real ``connections seed`` command, not the repository, so the
suite holds whatever that command writes besides connections. Waits are bounded and end early
when deliveries stop progressing; nothing asserts a duration.
"""
