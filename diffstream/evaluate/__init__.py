"""Rate–distortion and realism evaluation of codecs on any folder of images.

``python -m diffstream evaluate`` (``cli.py``) loads a folder (``images.py``), codes every
crop with every codec at every target budget (``run.py``), tabulates the common and sent
subsets (``tables.py``, scored by ``scoring.py``), computes Bjøntegaard deltas (``bd.py``)
and writes rd.csv, bd.csv, summary.md (``report.py``) and rd.png (``plots.py``). The tables
take coded items from any source, so the benchmarks reuse them. See docs/evaluate.md.
"""
