from __future__ import annotations

import boto3

from bridge.sandbox import BASE_IMAGE


def test_created_and_copied_images_are_ebs_backed(sandbox_env):
    ec2 = boto3.client("ec2")
    instance = ec2.run_instances(ImageId=BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]
    created = ec2.create_image(InstanceId=instance["InstanceId"], Name="made")["ImageId"]
    copied = ec2.copy_image(SourceImageId=created, SourceRegion="us-east-1", Name="copy")["ImageId"]
    images = ec2.describe_images(ImageIds=[created, copied])["Images"]
    assert {i["RootDeviceType"] for i in images} == {"ebs"}


def test_base_image_catalog_is_the_small_one(sandbox_env):
    ec2 = boto3.client("ec2")
    images = ec2.describe_images(Owners=["099720109477"])["Images"]
    assert BASE_IMAGE in {i["ImageId"] for i in images}
    assert len(images) == 2


def test_reset_forgets_resources(sandbox_server, sandbox_env):
    boto3.client("s3").create_bucket(Bucket="to-forget")
    sandbox_server.reset()
    names = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert "to-forget" not in names
