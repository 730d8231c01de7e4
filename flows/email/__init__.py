"""Nurture email.

``templates`` (load, publish, lint and preview the tracks in ``templates/``) is what the CLI and
the flows import; it builds on ``tracks`` (reading the authored files), ``context`` (the
variables a template may use), ``render`` (the sandboxed renderer) and ``plaintext``.
``message`` holds the types every sender shares; ``outbox`` is the local sender.
``preflight`` checks a run can send before it claims anything; ``gallery`` renders every step
for the sample leads (``preview --all``); ``proof`` sends one step as a test; ``queue`` counts
what the nurture queue holds back.
"""
