"""The pipeline: from a definition's fingerprint to a published image, parents first.

`resolve.py` is its workflow: look (`survey.py`), decide (`plan.py`, no I/O), then act: under
the build's lock and lease (`guard.py`), build (`builder.py`, with one `packer build` in
`build.py` on the tree `checkout.py` exports), gate (`gates.py`), sign (`provenance.py`; checked
by `verification.py`), copy and share (`distribute.py`), publish (`publish.py`, and the seed's
manifests in `seed.py`), and answer (`result.py`); `schedule.py` runs definitions parents
first, `matrix.py` plans CI waves.
"""
