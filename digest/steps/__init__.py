"""The pipeline's steps: each stage's orchestration over the store and the adapters.

One module per step, the single place that a Prefect task (``flows/``), a CLI command
(``digest.cli``) and the web app (``digest.web``) call. Pure work is delegated to
``digest.compose`` and ``digest.render``; a step never imports an entry point.

- :mod:`~digest.steps.gather`: fetch, parse and store a source's articles;
- :mod:`~digest.steps.compose`: compose, edit, approve, reject or decide on an edition, and
  queue its exhausted messages again;
- :mod:`~digest.steps.preview`: an edition as an editor previews it;
- :mod:`~digest.steps.messages`: where a message is built (personal, batch, test);
- :mod:`~digest.steps.ledger`: where a send is recorded (prepare, settle, record, finish, the
  delivery lease);
- :mod:`~digest.steps.sending`: the send loop of one process;
- :mod:`~digest.steps.workers`: the sending processes;
- :mod:`~digest.steps.lifeline`: how a process started for a run dies with it;
- :mod:`~digest.steps.deliver`: deliver an edition (and its dry run);
- :mod:`~digest.steps.edition`: an edition run from composition to the last send;
- :mod:`~digest.steps.stats`: record a click on an edition's link, and an edition's clicks.
"""
