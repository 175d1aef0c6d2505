"""AWS clients, their retry policy, and the translation of AWS failures into BridgeErrors.

Endpoints come from botocore's own configuration (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`,
`AWS_ENDPOINT_URL_S3`, profiles), so the sandbox and real AWS are reached the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bridge.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client

# Throttling, 5xx and dropped connections are retried with botocore's own backoff; everything
# else fails at once with a message (see aws_call).
RetryMode = Literal["legacy", "standard", "adaptive"]
RETRY_MODE: RetryMode = "standard"
MAX_ATTEMPTS = 8

# EC2's request-rate buckets are per account and region, and shared with Packer, Terraform and
# everyone else in the account: the bridge takes at most half of each (EC2's: CreateTags 100
# burst / 10 per second, CopyImage 100 / 1, ModifyImageAttribute 100 / 5). Parameter Store's
# throughput is per account and region too, and shared by every reader of its parameters: the
# bridge writes channels at a few a second. Throttling past that is retried, but not relied on.
RATE_LIMITS: dict[str, dict[str, tuple[float, float]]] = {  # operation -> (burst, per second)
    "ec2": {
        "CreateTags": (50.0, 5.0),
        "CopyImage": (50.0, 0.5),
        "ModifyImageAttribute": (50.0, 2.5),
    },
    "ssm": {"PutParameter": (5.0, 2.5)},
}

_PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}
_CREDENTIAL_CODES = {"AuthFailure", "InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch"}


class TokenBucket:
    """A request-rate bucket: `take()` waits until a token is there (thread-safe)."""

    def __init__(
        self,
        burst: float,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.burst, self.rate = burst, rate
        self._tokens, self._stamp = burst, clock()
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            self._sleep(wait)


class AwsClients:
    """Creates each AWS client once, all with the same retry policy."""

    def __init__(
        self,
        *,
        retry_mode: RetryMode = RETRY_MODE,
        max_attempts: int = MAX_ATTEMPTS,
        session: Any | None = None,
        model_cache: Path | None = None,
    ) -> None:
        """`model_cache`: where slim service models are kept (service_models.py), or None."""
        self._retry_mode = retry_mode
        self._model_cache = model_cache
        self._max_attempts = max_attempts
        self._session = session
        self._clients: dict[tuple[str, str | None], Any] = {}
        # Clients are shared by concurrent builds; creating them is not thread-safe.
        self._lock = threading.Lock()

    def _client(self, service: str, region: str | None) -> Any:
        with self._lock:
            return self._client_locked(service, region)

    def _client_locked(self, service: str, region: str | None) -> Any:
        key = (service, region)
        if key not in self._clients:
            import botocore.session
            from botocore.config import Config

            if self._session is None:
                from bridge.aws import service_models

                self._session = botocore.session.get_session()
                self._session.register_component(
                    "data_loader",
                    service_models.loader(self._model_cache)
                    if self._model_cache is not None
                    else service_models.botocores(),
                )
            config = Config(
                retries={"mode": self._retry_mode, "total_max_attempts": self._max_attempts},
                connect_timeout=10,
                read_timeout=60,
            )
            try:
                client = self._session.create_client(service, region_name=region, config=config)
            except Exception as exc:
                raise AwsError(
                    f"Cannot create the AWS {service} client for region {region}: {exc}. Check "
                    "the region name and the AWS configuration (profile, endpoint variables)."
                ) from None
            # A bucket per operation, client and so region (the quotas are per region).
            for operation, (burst, rate) in RATE_LIMITS.get(service, {}).items():
                bucket = TokenBucket(burst, rate)
                client.meta.events.register(
                    f"before-parameter-build.{service}.{operation}",
                    lambda bucket=bucket, **_: bucket.take(),
                )
            self._clients[key] = client
        return self._clients[key]

    def ec2(self, region: str) -> EC2Client:
        """The EC2 client for `region`."""
        client: EC2Client = self._client("ec2", region)
        return client

    def kms(self, region: str) -> KMSClient:
        """The KMS client for `region`."""
        client: KMSClient = self._client("kms", region)
        return client

    def sts(self, region: str) -> Any:
        """The STS client for `region` (who these credentials are)."""
        return self._client("sts", region)

    def ssm(self, region: str) -> Any:
        """The SSM client for `region` (promotion channels)."""
        return self._client("ssm", region)

    def autoscaling(self, region: str) -> Any:
        """The Auto Scaling client for `region` (what gc must not pull images from under)."""
        return self._client("autoscaling", region)

    def rbin(self, region: str) -> Any:
        """The Recycle Bin client for `region` (whether what gc deletes can be restored)."""
        return self._client("rbin", region)

    def s3(self, region: str | None = None) -> S3Client:
        """The S3 client (bucket names are global; the region only picks the endpoint)."""
        client: S3Client = self._client("s3", region)
        return client


@contextmanager
def aws_call(action: str, permission: str) -> Iterator[None]:
    """Turn botocore failures inside the block into an AwsError that says what to do.

    `action` says what we were doing ("looking up images in us-east-1"), `permission` which IAM
    action it needs ("ec2:DescribeImages").
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
    )

    started = time.monotonic()
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).rstrip(".")
        retried = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0)
        if retried:
            # Throttling or a server error that botocore's backoff retried, to no avail.
            raise AwsError(
                f"AWS still refused {action} after {retried} retries over "
                f"{time.monotonic() - started:.0f} s ({code}: {message}): the service is "
                "throttling this account or failing for now. Run again later; with --jobs, "
                "fewer concurrent builds make fewer calls."
            ) from None
        if code in _PERMISSION_CODES:
            raise AwsError(
                f"AWS denied {action}: the caller lacks {permission} ({code}: {message}). Grant "
                f"{permission} to the role or user the bridge runs as, or run it with credentials "
                "that have it."
            ) from None
        if code in _CREDENTIAL_CODES:
            raise AwsError(
                f"AWS rejected the credentials while {action} ({code}: {message}). Refresh the "
                "credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO login)."
            ) from None
        raise AwsError(
            f"AWS refused {action} ({code}: {message}). Check the value it names; this is not "
            "retried because retrying cannot fix it."
        ) from None
    except NoCredentialsError:
        raise AwsError(
            f"No AWS credentials were found for {action}. Set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an instance role is available."
        ) from None
    except NoRegionError:
        raise AwsError(
            f"No AWS region is set for {action}. Pass `region` or set AWS_REGION."
        ) from None
    except EndpointConnectionError as exc:
        raise AwsError(
            f"Cannot reach AWS while {action}: {exc}. Check the network and any endpoint "
            "override (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_S3)."
        ) from None
    except ParamValidationError as exc:
        raise AwsError(
            f"A value is invalid for {action}: {exc}. Correct the value it names (in the query, "
            "the catalog or the options)."
        ) from None
    except BotoCoreError as exc:
        raise AwsError(
            f"AWS call failed while {action} after {MAX_ATTEMPTS} attempts: {exc}. Try again; "
            "if it keeps failing, check the endpoint and the network."
        ) from None
