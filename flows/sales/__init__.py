"""Sales follow-up tasks: creation from the hand-off queue and the send ledger, and their sinks."""
