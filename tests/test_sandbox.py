from __future__ import annotations

import os
import queue
import shlex
import subprocess
import sys
import threading
from xml.etree import ElementTree

import boto3

from bridge.sandbox import ACCOUNT, BASE_IMAGE, OTHER_ACCOUNT


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


def test_the_sandbox_says_how_to_point_a_shell_at_it():
    server = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stderr is not None
        endpoint = server.stdout.readline().split()[1]
        # Read on the side: a sandbox that said nothing would leave readline waiting forever.
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(
            target=lambda: [lines.put(ln) for ln in server.stderr], daemon=True
        ).start()
        said = [lines.get(timeout=120), lines.get(timeout=120)]
        assert endpoint in said[0] and "Ctrl-C" in said[0]
        command, *assignments = shlex.split(said[1])
        assert command == "export"
        exported = dict(a.split("=", 1) for a in assignments)
        # A shell with nothing else of AWS's: what the line sets is all a client needs.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | exported
        account = subprocess.run(
            [
                sys.executable,
                "-c",
                "import boto3; print(boto3.client('sts').get_caller_identity()['Account'])",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        assert account == ACCOUNT
        assert exported["AWS_ENDPOINT_URL"] == endpoint
    finally:
        server.terminate()
        server.wait(timeout=60)


def xml_conforms(element, shape, ec2: bool = True) -> list[str]:
    """Where a raw EC2 (ec2 protocol) or other query-protocol XML response strays from its
    botocore shape: elements the shape lacks, booleans that are not true/false. Empty: it
    conforms. EC2 names elements in lowerCamelCase; the query protocol uses the member names."""
    problems = []
    if shape.type_name == "structure":
        names = {
            m.serialization.get("name", n[:1].lower() + n[1:] if ec2 else n): m
            for n, m in shape.members.items()
        }
        for child in element:
            tag = child.tag.split("}")[-1]
            if tag == "requestId":  # every EC2 response's metadata, outside the shapes
                continue
            if tag not in names:
                problems.append(f"{shape.name} has no {tag}")
            else:
                problems += xml_conforms(child, names[tag], ec2)
    elif shape.type_name == "list":
        for child in element:
            problems += xml_conforms(child, shape.member, ec2)
    elif shape.type_name == "boolean" and element.text not in ("true", "false"):
        problems.append(f"{shape.name} is {element.text!r}")
    return problems


def raw_responses(client, service: str = "ec2") -> list[bytes]:
    """The raw bodies of the client's responses, as they arrive (before botocore parses them)."""
    bodies: list[bytes] = []
    client.meta.events.register(
        f"before-parse.{service}.*", lambda response_dict, **_: bodies.append(response_dict["body"])
    )
    return bodies


def made_image(ec2, name: str) -> str:
    instance = ec2.run_instances(ImageId=BASE_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]
    ami: str = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    return ami


def test_copy_image_copies_tags_and_encrypts_as_asked(sandbox_env):
    east, west = boto3.client("ec2"), boto3.client("ec2", region_name="eu-west-1")
    source = made_image(east, "source")
    east.create_tags(Resources=[source], Tags=[{"Key": "SHA", "Value": "f" * 40}])
    key = boto3.client("kms", region_name="eu-west-1").create_key()["KeyMetadata"]["Arn"]
    plain = west.copy_image(SourceImageId=source, SourceRegion="us-east-1", Name="plain")
    tagged = west.copy_image(
        SourceImageId=source, SourceRegion="us-east-1", Name="tagged", CopyImageTags=True,
        Encrypted=True, KmsKeyId=key,
    )  # fmt: skip
    default = west.copy_image(
        SourceImageId=source, SourceRegion="us-east-1", Name="default", Encrypted=True
    )
    ids = [plain["ImageId"], tagged["ImageId"], default["ImageId"]]
    bodies = raw_responses(west)
    response = west.describe_images(ImageIds=ids)
    output = west.meta.service_model.operation_model("DescribeImages").output_shape
    assert xml_conforms(ElementTree.fromstring(bodies[-1]), output) == []
    assert b"<encrypted>true</encrypted>" in bodies[-1] and b"<kmsKeyId>" in bodies[-1]
    by_name = {i["Name"]: i for i in response["Images"]}
    assert "Tags" not in by_name["plain"] or by_name["plain"]["Tags"] == []
    assert by_name["tagged"]["Tags"] == [{"Key": "SHA", "Value": "f" * 40}]
    ebs = {
        n: next(m["Ebs"] for m in i["BlockDeviceMappings"] if "Ebs" in m)
        for n, i in by_name.items()
    }
    assert ebs["plain"]["Encrypted"] is False and "KmsKeyId" not in ebs["plain"]
    assert ebs["tagged"]["Encrypted"] is True and ebs["tagged"]["KmsKeyId"] == key
    # EC2's default key, by ARN: the account's alias/aws/ebs, which AWS manages.
    kms = boto3.client("kms", region_name="eu-west-1")
    default_key = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert ebs["default"]["KmsKeyId"] == default_key["Arn"]
    assert default_key["KeyManager"] == "AWS"
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyManager"] == "CUSTOMER"
    # A copy of an encrypted image stays encrypted, under its key.
    again = east.copy_image(SourceImageId=tagged["ImageId"], SourceRegion="eu-west-1", Name="again")
    (image,) = east.describe_images(ImageIds=[again["ImageId"]])["Images"]
    assert next(m["Ebs"] for m in image["BlockDeviceMappings"] if "Ebs" in m)["KmsKeyId"] == key


def test_an_image_shared_with_another_account_shows_there_without_its_owners_tags(
    sandbox_server, sandbox_env
):
    owner = boto3.client("ec2")
    other_env = sandbox_server.env(account=OTHER_ACCOUNT)
    other = boto3.client(
        "ec2", aws_access_key_id=other_env["AWS_ACCESS_KEY_ID"], aws_secret_access_key="x"
    )
    shared, private = made_image(owner, "shared"), made_image(owner, "private")
    owner.create_tags(Resources=[shared, private], Tags=[{"Key": "SHA", "Value": "f" * 40}])
    assert other.describe_images(Owners=[ACCOUNT])["Images"] == []
    owner.modify_image_attribute(
        ImageId=shared, LaunchPermission={"Add": [{"UserId": OTHER_ACCOUNT}]}
    )
    (seen,) = other.describe_images(Owners=[ACCOUNT])["Images"]
    assert seen["ImageId"] == shared and seen["OwnerId"] == ACCOUNT and not seen.get("Tags")
    assert [i["ImageId"] for i in other.describe_images(ImageIds=[shared])["Images"]] == [shared]
    assert other.describe_images(Owners=["self"])["Images"] == []
    tag_filter = [{"Name": "tag:SHA", "Values": ["f" * 40]}]
    assert other.describe_images(Owners=[ACCOUNT], Filters=tag_filter)["Images"] == []
    # The viewer's own tags on the shared image are its own to see.
    other.create_tags(Resources=[shared], Tags=[{"Key": "mine", "Value": "yes"}])
    (seen,) = other.describe_images(Owners=[ACCOUNT])["Images"]
    assert seen["Tags"] == [{"Key": "mine", "Value": "yes"}]
    owner_view = owner.describe_images(ImageIds=[shared])["Images"][0]
    assert {t["Key"] for t in owner_view["Tags"]} == {"SHA"}


def test_image_deprecation_is_set_shown_and_cleared_as_ec2_does(sandbox_env):
    from datetime import datetime, timedelta, timezone

    from botocore.exceptions import ClientError

    ec2 = boto3.client("ec2")
    ami = made_image(ec2, "deprecated")
    bodies = raw_responses(ec2)
    at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=5, seconds=40)
    assert ec2.enable_image_deprecation(ImageId=ami, DeprecateAt=at)["Return"] is True
    model = ec2.meta.service_model
    enable = model.operation_model("EnableImageDeprecation").output_shape
    assert xml_conforms(ElementTree.fromstring(bodies[-1]), enable) == []
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    describe = model.operation_model("DescribeImages").output_shape
    assert xml_conforms(ElementTree.fromstring(bodies[-1]), describe) == []
    # Rounded to the nearest minute, in EC2's format.
    rounded = (at + timedelta(seconds=30)).replace(second=0)
    assert image["DeprecationTime"] == rounded.strftime("%Y-%m-%dT%H:%M:00.000Z")
    try:
        ec2.enable_image_deprecation(ImageId=ami, DeprecateAt=at - timedelta(hours=1))
        raise AssertionError("a deprecation time in the past was accepted")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidParameterValue"
    try:
        ec2.enable_image_deprecation(ImageId="ami-0123456789abcdef0", DeprecateAt=at)
        raise AssertionError("an unknown image was deprecated")
    except ClientError as exc:
        assert exc.response["Error"]["Code"].startswith("InvalidAMIID")
    assert ec2.disable_image_deprecation(ImageId=ami)["Return"] is True
    disable = model.operation_model("DisableImageDeprecation").output_shape
    assert xml_conforms(ElementTree.fromstring(bodies[-1]), disable) == []
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    assert "DeprecationTime" not in image


def test_describe_image_references_answers_as_ec2_does(sandbox_env):
    ec2 = boto3.client("ec2")
    used, old, unused = made_image(ec2, "used"), made_image(ec2, "old"), made_image(ec2, "unused")
    running = ec2.run_instances(ImageId=used, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    stopped = ec2.run_instances(ImageId=old, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[stopped])
    template = ec2.create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": old}
    )["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": used}
    )
    boto3.client("ssm").put_parameter(
        Name="/app/ami", Value=used, Type="String", DataType="aws:ec2:image"
    )
    bodies = raw_responses(ec2)
    everything = ec2.describe_image_references(
        ImageIds=[used, old, unused], IncludeAllResourceTypes=True
    )["ImageReferences"]
    output = ec2.meta.service_model.operation_model("DescribeImageReferences").output_shape
    assert xml_conforms(ElementTree.fromstring(bodies[-1]), output) == []
    arn = "arn:aws:{}:us-east-1:" + ACCOUNT + ":{}"
    assert sorted((r["ImageId"], r["ResourceType"], r["Arn"]) for r in everything) == sorted(
        [
            (used, "ec2:Instance", arn.format("ec2", f"instance/{running}")),
            (old, "ec2:Instance", arn.format("ec2", f"instance/{stopped}")),
            (old, "ec2:LaunchTemplate", arn.format("ec2", f"launch-template/{template}")),
            (used, "ec2:LaunchTemplate", arn.format("ec2", f"launch-template/{template}")),
            (used, "ssm:Parameter", arn.format("ssm", "parameter/app/ami")),
        ]
    )
    # Options: instance states, and how many of a template's newest versions count.
    narrow = ec2.describe_image_references(
        ImageIds=[used, old],
        ResourceTypes=[
            {
                "ResourceType": "ec2:Instance",
                "ResourceTypeOptions": [{"OptionName": "state-name", "OptionValues": ["running"]}],
            },
            {
                "ResourceType": "ec2:LaunchTemplate",
                "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["1"]}],
            },
        ],
    )["ImageReferences"]
    assert sorted((r["ImageId"], r["ResourceType"]) for r in narrow) == [
        (used, "ec2:Instance"),
        (used, "ec2:LaunchTemplate"),
    ]


def query_result(body: bytes, operation: str):
    """The <OperationResult> element of a raw query-protocol response."""
    root = ElementTree.fromstring(body)
    assert root.tag.split("}")[-1] == f"{operation}Response", root.tag
    (result,) = [c for c in root if c.tag.split("}")[-1] == f"{operation}Result"]
    return result


def running(autoscaling, ec2, group: str) -> dict[str, str]:
    """The group's instances and their images."""
    (found,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
        "AutoScalingGroups"
    ]
    ids = [i["InstanceId"] for i in found["Instances"]]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return {i["InstanceId"]: i["ImageId"] for r in reservations for i in r["Instances"]}


def test_instance_refreshes_are_started_and_described_as_auto_scaling_does(sandbox_env):
    from botocore.exceptions import ClientError

    ec2, autoscaling = boto3.client("ec2"), boto3.client("autoscaling")
    template = ec2.create_launch_template(
        LaunchTemplateName="fleet", LaunchTemplateData={"ImageId": BASE_IMAGE}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="fleet", MinSize=0, MaxSize=1, AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
    )  # fmt: skip
    bodies = raw_responses(autoscaling, "autoscaling")
    model = autoscaling.meta.service_model
    assert (
        autoscaling.describe_instance_refreshes(AutoScalingGroupName="fleet")["InstanceRefreshes"]
        == []
    )
    preferences = {"MinHealthyPercentage": 90, "InstanceWarmup": 60, "SkipMatching": True}
    first = autoscaling.start_instance_refresh(
        AutoScalingGroupName="fleet", Strategy="Rolling", Preferences=preferences
    )["InstanceRefreshId"]
    start = model.operation_model("StartInstanceRefresh").output_shape
    assert xml_conforms(query_result(bodies[-1], "StartInstanceRefresh"), start, False) == []
    second = autoscaling.start_instance_refresh(AutoScalingGroupName="fleet")["InstanceRefreshId"]
    assert first != second
    listed = autoscaling.describe_instance_refreshes(AutoScalingGroupName="fleet")
    describe = model.operation_model("DescribeInstanceRefreshes").output_shape
    result = query_result(bodies[-1], "DescribeInstanceRefreshes")
    assert xml_conforms(result, describe, False) == []
    assert b"<SkipMatching>true</SkipMatching>" in bodies[-1]
    newest, oldest = listed["InstanceRefreshes"]
    assert (newest["InstanceRefreshId"], oldest["InstanceRefreshId"]) == (second, first)
    assert oldest["AutoScalingGroupName"] == "fleet"
    assert oldest["Status"] == "Successful" and oldest["PercentageComplete"] == 100
    assert oldest["Strategy"] == "Rolling"
    assert oldest["Preferences"] == preferences
    by_id = autoscaling.describe_instance_refreshes(
        AutoScalingGroupName="fleet", InstanceRefreshIds=[first]
    )["InstanceRefreshes"]
    assert [r["InstanceRefreshId"] for r in by_id] == [first]
    # The refresh replaces the instances that are not on the group's version.
    images = ec2.describe_images(Owners=["099720109477"])["Images"]
    (other,) = [i["ImageId"] for i in images if i["ImageId"] != BASE_IMAGE]
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="fleet", MinSize=1, DesiredCapacity=1
    )
    ec2.create_launch_template_version(
        LaunchTemplateId=template, LaunchTemplateData={"ImageId": other}
    )
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="fleet", MinSize=2, MaxSize=3, DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "2"},
    )  # fmt: skip
    before = running(autoscaling, ec2, "fleet")
    assert sorted(before.values()) == [BASE_IMAGE, other]  # the new one is on version 2
    autoscaling.start_instance_refresh(AutoScalingGroupName="fleet", Preferences=preferences)
    after = running(autoscaling, ec2, "fleet")
    assert list(after.values()) == [other, other]
    kept = [i for i, image in before.items() if image == other]
    assert set(kept) < set(after)  # skip matching: the one on version 2 stayed
    try:
        autoscaling.start_instance_refresh(AutoScalingGroupName="ghost")
        raise AssertionError("a refresh of an unknown group was started")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ValidationError"


def test_a_root_mapping_without_size_or_snapshot_uses_the_images_snapshot(sandbox_env):
    ec2 = boto3.client("ec2")
    mapping = {"DeviceName": "/dev/sda1", "Ebs": {"VolumeType": "gp3", "Encrypted": True}}
    template = ec2.create_launch_template(
        LaunchTemplateName="root",
        LaunchTemplateData={"ImageId": BASE_IMAGE, "BlockDeviceMappings": [mapping]},
    )["LaunchTemplate"]["LaunchTemplateId"]
    (instance,) = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": template}, MinCount=1, MaxCount=1
    )["Instances"]
    (image,) = ec2.describe_images(ImageIds=[BASE_IMAGE])["Images"]
    snapshot = next(m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m)
    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
    )["Volumes"]
    # (moto also attaches its default root volume, without a snapshot, beside it)
    from_template = [v for v in volumes if v.get("SnapshotId")]
    assert [(v["SnapshotId"], v["VolumeType"], v["Encrypted"]) for v in from_template] == [
        (snapshot, "gp3", True)
    ]
