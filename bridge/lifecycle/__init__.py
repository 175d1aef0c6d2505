"""An image's life after it is built: revocation and restore (`revoke.py`, its look-ups in
`revoke_lookup.py`), promotion channels (`channels.py`), and retention: gc's workflow (`gc.py`),
its decision (`retention.py`, no I/O), what uses an image (`references.py`, and what launches
one in `launchers.py`), whether a deletion can be undone (`recovery.py`), and snapshot archiving
(`archive.py`).
"""
