"""ami-chain-bridge: fingerprinted Packer AMI chains for Terraform."""

__version__ = "0.1.0"
