"""Passages and a question to a checked, cited, safe answer (stage 3: above retrieval, below the wiring).

- ``engine``     ``ChatEngine`` and ``ChatOptions``: search, refuse early, prompt, stream, cite, check, quote
- ``events``     what it hands out: ``Answer``, ``Source``, ``ChatEvent``
- ``prompt``     what the model reads: instruction, worked examples, delimited sources, excerpts
- ``guards``     what a streaming reply is watched for: secrets, loops, the refusal sentence
- ``citations``  the sources an answer cites as [n], with the markers a small model forgot
- ``grounding``  each sentence checked against the source it cites
- ``quote``      the passage an answer rests on, quoted under it
- ``followup``   whether a question leans on the previous one; which earlier turns the model sees
- ``refusal``    whether a reply says the documents do not answer
- ``replies``    the app's fixed replies, in English and Chinese
- ``conversations`` the saved conversations: each question, and its answer (done, failed or stopped)
- ``sanitize``   ``safe_markdown`` and ``MarkdownStream``: answer Markdown that fetches nothing

Left out: finding the passages (``ragchat.retrieve``), talking to a model (``ragchat.llm``), building
the engine from settings (``ragchat.engine``), and how an answer is shown or sent (``ragchat.ui``,
``ragchat.api``, ``ragchat.cli``).
"""
