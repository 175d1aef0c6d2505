"""The AWS adapters: clients and the retry policy (`clients.py`), slim botocore models
(`service_models.py`), AMIs in EC2 (`registry.py`), manifests in S3 (`manifests.py`), build
leases (`lease.py`), launch permissions (`share.py`), and every region at once (`fanout.py`).
"""
