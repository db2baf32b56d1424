"""Measuring ragchat on a BEIR-format data set, through the very code the app uses (stage 5: above the wiring).

- ``retrieval``  ``ragchat eval``: nDCG@10, Recall@100, MRR@10 and query latency of retrieval
- ``answers``    ``ragchat eval --answers``: how often the answers are right, refuse, cite the right
                 passages, and how fast they come
- ``stats``      the one percentile every figure uses (bench scripts too)

Left out: tuning anything (it only measures), LLM-as-judge scoring, and the bench scripts that
compare settings and models (``bench/``).
"""
