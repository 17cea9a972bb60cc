"""S3 access denied and bad credentials, against a moto server that enforces authentication:
exit 2, one line naming the URL, no secret, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def locked_s3(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server whose first 3 requests are unauthenticated (a bucket, an IAM user with no
    policy, and its access key); every later request must be signed by a known, allowed key."""
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "s3_server.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
    )
    try:
        endpoint = f"http://127.0.0.1:{int(server.stdout.readline())}"
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "AKIASETUP", "aws_secret_access_key": "setup"}
        boto3.client("s3", **setup).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield endpoint, {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        server.stdin.close()
        server.wait(10)


@pytest.mark.parametrize("who", ["denied", "bad credentials"])
@pytest.mark.parametrize("side", ["source", "store"])
def test_access_denied_and_bad_credentials(locked_s3, tmp_path, imgstats, who, side):
    endpoint, user = locked_s3
    credentials = user if who == "denied" else {"key": "AKIANOSUCHKEY",
                                                "secret": "wrong-secret-value"}
    options = json.dumps({"endpoint_url": endpoint, **credentials})
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes((ROOT / "tests" / "corpus" / "valid.png").read_bytes())
    if side == "source":
        args = ["s3://locked/images", "--out", str(tmp_path / "stats"), "--source-options", options]
    else:
        args = [str(images), "--out", "s3://locked/stats", "--store-options", options]
    done = imgstats("compute", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3://locked/" in lines[0], done.stderr
    assert "denied" in lines[0]
    assert credentials["secret"] not in done.stdout + done.stderr
    assert not (tmp_path / "stats").exists()
