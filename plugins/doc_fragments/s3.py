# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Options of an S3 repository (s3://bucket/prefix); see backup/_options.S3_ARGS.
    DOCUMENTATION = r'''
options:
  s3_endpoint_url:
    description:
      - URL of an S3-compatible server (Ceph RGW, SeaweedFS, MinIO, ...), such as C(https://s3.example.com:9000).
        Default is AWS S3 itself. Buckets are then addressed by path.
      - Used only when a repository is an S3 location C(s3://bucket/prefix).
    type: str
  s3_access_key:
    description:
      - Access key id. Without O(s3_access_key) and O(s3_secret_key), boto3's usual sources apply in their
        usual order (the C(AWS_ACCESS_KEY_ID), C(AWS_SECRET_ACCESS_KEY) and C(AWS_SESSION_TOKEN) environment
        variables, O(s3_profile) or C(AWS_PROFILE) in C(~/.aws/credentials) and C(~/.aws/config), an instance
        role) on the managed host.
    type: str
  s3_secret_key:
    description: Secret access key that goes with O(s3_access_key).
    type: str
  s3_session_token:
    description: Session token of temporary credentials.
    type: str
  s3_region:
    description: Region of the bucket (default from the profile or C(AWS_REGION)/C(AWS_DEFAULT_REGION)).
    type: str
  s3_profile:
    description: Profile of the AWS shared configuration and credentials files on the managed host.
    type: str
requirements:
  - boto3 on the managed host for S3 repositories (Debian/Ubuntu C(python3-boto3))
'''
