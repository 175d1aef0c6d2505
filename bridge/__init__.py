"""ami-chain-bridge: fingerprinted Packer AMI chains for Terraform.

The version has one source, the package metadata (`ami-bridge --version`).
"""
