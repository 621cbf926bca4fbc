"""The ``aws`` lister: EC2 instances tagged ``slipstream-service``, through boto3.

Credentials come from the usual AWS environment (variables, profile, instance role), as
for the Terraform provider; the region from the cloud's ``region`` setting. EC2 keeps
showing a terminated instance for a while: it is listed, with its state, and is not live.

Example (not run: it asks EC2)::

        lister = AwsLister()
        lister.instances(Cloud("aws-eu", "aws", {"region": "eu-west-1"}), "slipstream")
        # [CloudInstance(id='i-0abc…', run_id='0f3a…', instance='web.1', status='running')]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.errors import CloudError
from engine.inventory.cloudlister import CloudLister
from engine.inventory.model import CloudInstance
from engine.recipes.clouds import Cloud
from providers_map.machines import RESERVED_PREFIX

if TYPE_CHECKING:
    from types_boto3_ec2 import EC2Client

SERVICE_TAG = f"{RESERVED_PREFIX}service"
RUN_TAG = f"{RESERVED_PREFIX}run"
INSTANCE_TAG = f"{RESERVED_PREFIX}instance"


class AwsLister(CloudLister):
    """EC2 instances by the service tag, matched to the states' ``aws_instance`` ids."""

    type = "aws"

    def _client(self, cloud: Cloud) -> EC2Client:
        import boto3

        return boto3.client("ec2", region_name=str(cloud.settings.get("region", "")))

    def instances(self, cloud: Cloud, service: str) -> list[CloudInstance]:
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        try:
            pages = (
                self._client(cloud)
                .get_paginator("describe_instances")
                .paginate(Filters=[{"Name": f"tag:{SERVICE_TAG}", "Values": [service]}])
            )
            for page in pages:
                for reservation in page.get("Reservations", []):
                    for instance in reservation.get("Instances", []):
                        tags = {
                            t.get("Key", ""): t.get("Value", "") for t in instance.get("Tags", [])
                        }
                        found.append(
                            CloudInstance(
                                instance.get("InstanceId", ""),
                                tags.get(RUN_TAG, ""),
                                tags.get(INSTANCE_TAG, ""),
                                instance.get("State", {}).get("Name", "unknown"),
                            )
                        )
        except (BotoCoreError, ClientError) as err:
            raise CloudError(_failed(cloud, "cannot list its instances", err)) from err
        return sorted(found, key=lambda i: (i.run_id, i.instance, i.id))

    def terminate(self, cloud: Cloud, instances: Sequence[CloudInstance]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if not instances:
            return
        try:
            self._client(cloud).terminate_instances(InstanceIds=[i.id for i in instances])
        except (BotoCoreError, ClientError) as err:
            raise CloudError(_failed(cloud, "cannot terminate instances", err)) from err


def _failed(cloud: Cloud, what: str, err: Exception) -> str:
    region = cloud.settings.get("region", "?")
    return f"cloud `{cloud.name}` (aws, {region}): {what}: {type(err).__name__}: {err}"
