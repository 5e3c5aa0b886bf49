"""Experiments over the pipeline: comparisons of models over seeds (``run_compare.py``) and
hyper-parameter search (``run_hyper.py``).

:mod:`~recbole_fame.experiment.compare` (the runs of a comparison, resumable),
:mod:`~recbole_fame.experiment.report` (its tables and chart, beside the paper's Table 2 shipped as
``fame_paper_table2.csv``) and :mod:`~recbole_fame.experiment.hyper` (RecBole's ``HyperTuning``
over FAME's two stages).
"""
