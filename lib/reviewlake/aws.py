"""AWS access for the launchers and the S3 training path: one boto3 session per launch,
built from the profile.

The profile's ``aws`` section names the region, an optional named profile (the credentials
themselves come from boto3's usual chain, never from reviewlake's files) and an optional
``endpoint_url`` for an AWS API emulator. Every client the launchers and the sagemaker SDK
create comes from :meth:`Aws.session`, so pointing ``endpoint_url`` at an emulator moves all
of them there (tests do exactly that).

AWS errors a user can act on (no credentials, no such bucket or cluster, access denied)
become one-line :class:`~reviewlake.errors.UserError`s.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import UserError


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` (or s3a://, s3n://) -> (bucket, key)."""
    for scheme in ("s3://", "s3a://", "s3n://"):
        if uri.startswith(scheme):
            rest = uri[len(scheme):]
            bucket, _, key = rest.partition("/")
            if bucket:
                return bucket, key
    raise UserError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")


def s3_join(prefix: str, *parts: str) -> str:
    out = prefix.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def _endpoint_session(endpoint_url: str):
    """A boto3 Session whose clients and resources default to ``endpoint_url``.

    Code that creates its own clients from the session (the sagemaker SDK's resources do)
    reaches the same endpoint; an explicit ``endpoint_url`` still wins."""
    import boto3

    class EndpointSession(boto3.Session):
        def client(self, *args, **kwargs):  # type: ignore[override]
            if kwargs.get("endpoint_url") is None or _is_aws_endpoint(kwargs.get("endpoint_url")):
                kwargs["endpoint_url"] = endpoint_url
            return super().client(*args, **kwargs)

        def resource(self, *args, **kwargs):  # type: ignore[override]
            if kwargs.get("endpoint_url") is None:
                kwargs["endpoint_url"] = endpoint_url
            return super().resource(*args, **kwargs)

    return EndpointSession


def _is_aws_endpoint(url: str | None) -> bool:
    return bool(url) and ".amazonaws.com" in str(url)


@dataclass
class Aws:
    region: str
    profile: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_config(cls, cfg, region: str | None = None) -> "Aws":
        region = region or cfg.get("aws.region") or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise UserError("no AWS region: set aws.region in the profile or pass --region")
        return cls(region=str(region), profile=cfg.get("aws.profile") or None,
                   endpoint_url=cfg.get("aws.endpoint_url") or None)

    def session(self):
        import boto3

        factory = _endpoint_session(self.endpoint_url) if self.endpoint_url else boto3.Session
        try:
            return factory(region_name=self.region, profile_name=self.profile)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
            name = self.profile or os.environ.get("AWS_PROFILE")
            raise UserError(f"cannot open AWS profile {name!r}: {exc}") from None

    def client(self, service: str, session=None):
        return (session or self.session()).client(service, region_name=self.region)


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn the AWS failures a user can fix into one-line UserErrors naming ``action``."""
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                     NoCredentialsError, NoRegionError, PartialCredentialsError)

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise UserError(f"{action}: no AWS credentials found; configure them (aws configure, "
                        "AWS_PROFILE, an instance role) or set aws.profile") from None
    except NoRegionError:
        raise UserError(f"{action}: no AWS region; set aws.region in the profile") from None
    except EndpointConnectionError as exc:
        raise UserError(f"{action}: cannot reach {exc.kwargs.get('endpoint_url', 'AWS')}") from None
    except ClientError as exc:
        err: dict[str, Any] = exc.response.get("Error", {})
        code, message = err.get("Code", "Error"), err.get("Message", str(exc))
        raise UserError(f"{action}: {code}: {message}") from None
    except BotoCoreError as exc:
        raise UserError(f"{action}: {exc}") from None


class S3:
    """The few S3 operations the launchers need."""

    def __init__(self, client):
        self.client = client

    def upload(self, path: str, uri: str) -> str:
        bucket, key = parse_s3_uri(uri)
        with aws_errors(f"uploading {os.path.basename(path)} to {uri}"):
            self.client.upload_file(str(path), bucket, key)
        return uri

    def read_text(self, uri: str) -> str | None:
        """The object's text, or None if there is no such object."""
        from botocore.exceptions import ClientError

        bucket, key = parse_s3_uri(uri)
        with aws_errors(f"reading {uri}"):
            try:
                body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            return body.read().decode("utf-8")

    def list(self, uri: str) -> list[str]:
        """Every key under the prefix, as s3:// URIs."""
        bucket, prefix = parse_s3_uri(uri)
        out: list[str] = []
        with aws_errors(f"listing {uri}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix):
                out += [f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", [])]
        return out

    def download(self, uri: str, path: str) -> None:
        bucket, key = parse_s3_uri(uri)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with aws_errors(f"downloading {uri}"):
            self.client.download_file(bucket, key, path)

    def write_text(self, uri: str, text: str) -> str:
        bucket, key = parse_s3_uri(uri)
        with aws_errors(f"writing {uri}"):
            self.client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
        return uri

    def sizes(self, uri: str) -> dict[str, int]:
        """Every key under the prefix, as s3:// URI -> size in bytes."""
        bucket, prefix = parse_s3_uri(uri)
        out: dict[str, int] = {}
        with aws_errors(f"listing {uri}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix):
                out.update({f"s3://{bucket}/{obj['Key']}": int(obj["Size"])
                            for obj in page.get("Contents", [])})
        return out

    def delete(self, uris) -> None:
        """Delete the objects, in the order given (absent ones are no error)."""
        for uri in uris:
            bucket, key = parse_s3_uri(uri)
            with aws_errors(f"deleting {uri}"):
                self.client.delete_object(Bucket=bucket, Key=key)
