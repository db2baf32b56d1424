"""What every stage may use, and which imports no other ragchat package (stage 0).

- ``settings``  the one typed settings object and how it is loaded (file, environment, flags)
- ``errors``    the exceptions, with messages written for the person using ragchat
- ``text``      text rules: index terms (``analyze``), the CJK range, the sentence splitter,
                the citation marker, words and clauses
- ``access``    who may read which collection: the naming rule of private collections
- ``streams``   ``BackgroundIterator``: a blocking iterator read without blocking

Left out: anything that touches a store, a model, the network or the catalog.
"""
