"""Measuring ragchat on a BEIR-format data set, through the very code the app uses (stage 5: above the wiring).

- ``retrieval``  ``ragchat eval``: nDCG@10, Recall@100, MRR@10 and query latency of retrieval
- ``answers``    ``ragchat eval --answers``: how often the answers are right, refuse, cite the right
                 passages, and how fast they come
- ``report``     the table ``--answers`` prints
- ``qaset``      a QA set for the web app: an uploaded BEIR .zip opened safely; the store's own
                 documents a set names
- ``runs``       the web app's evaluations (``EvalRuns``): ``--answers``' question loop over the
                 app's own engine, per set-up, in the background, kept in the catalog
- ``stats``      the one percentile every figure uses (bench scripts too)

Left out: tuning anything (it only measures), LLM-as-judge scoring, and the bench scripts that
compare settings and models (``bench/``).
"""
