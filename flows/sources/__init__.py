"""Source adapters: how files in the inbox become rows in ``raw.*`` (or quarantine rows)."""
