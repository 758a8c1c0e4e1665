"""Frame accounting: the only code that decides what became of a frame, and where it is kept.

- ``keys``: every ledger key, built and parsed here, bounded to the ledger's fixed key size
  (never truncated); ``reasons``: the kind of a drop reason (fault, policy, stop).
- ``envelope``: ``Envelope``, the typed header of what travels (its kind, the message, the
  shared-memory slots it uses) and ``Accounting``, what each envelope says of the frames
  before it (source drops, losses counted upstream, a SKIP's reason); the codec only
  serialises them.
- ``books``: the books in a stage's ledger, each change one commit: a source's numbering
  (``SourceBook``), a stream's chain as it comes via a stage (``Chain``), a sink's tally
  (``Tally``), and ``settle`` (undo what a killed process left half-committed).
- ``stage_book``: the stage side, ``StageBook``: admit a link (or refuse a copy), count the
  hole before it, pass it on, settle its fate at a sink, restore a lost END.
- ``run_book``: the run side, ``RunBook``: deaths, stream ends, lost ENDs, instances gone,
  and the delivery report; ``delivery``: the report's per stream and sink arithmetic.

All of it runs without processes: ``tests/accounting`` drives it directly. The invariant
and how each failure keeps it is stated in ``pipeline.runtime.integrity``.
"""
