"""Live mode: the simulator's sender and receiver on two machines, over real ZeroMQ sockets.

``python -m diffstream send`` (machine A) encodes frames in real time and streams them to
``python -m diffstream recv`` (machine B), which decodes, plays out and scores them and sends
delivery reports back; the reports drive the same budget policies as the simulator. Both
sides write the simulator's per-frame log (``frames.jsonl``), so ``diffstream.output.report``
applies.

Modules, one job each:

- ``protocol``: the live message envelope around the wire frame (kinds, bounds, checks).
- ``replay``: per-session sequence window (replayed / out-of-order frames).
- ``clock``: NTP-style clock offset estimate between the two machines, with its error bound.
- ``security``: CURVE certificates (``keys``), loopback detection, the ZAP authenticator.
- ``sockets``: socket options (HWM, heartbeats, reconnect, size limits) and monitor events.
- ``shaping``: optional pacing of the sender to a trace through the simulator's link model.
- ``logs``: frame log, sender journal and stream state files (restart and resume).
- ``accounting``: one ``FrameRecord`` from the sender's and the receiver's halves; fates.
- ``sender``, ``receiver``: the two event loops (their terminal views are
  ``diffstream.output.dashboard.live``, the end-of-stream report
  ``diffstream.output.live_report``).
- ``schema``: the ``live:`` section of a scenario; ``cli``: the ``send``/``recv``/``keys``
  commands.
- ``check``: do the two sides' logs agree? (Processes and network namespaces for tests live
  in ``tests/support/live_harness.py``.)

See docs/live.md for the user's guide.
"""
