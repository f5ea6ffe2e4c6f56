# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Backup repositories in S3-compatible object storage (AWS S3, Ceph RGW, SeaweedFS, MinIO).

A repository at s3://<bucket>/<prefix> holds the same names as a directory repository, as object
keys below the prefix: <prefix>/repository.json, <prefix>/<domain>/<chain>/<backup>/manifest.json,
.../<disk>.qcow2 and so on (docs/repository-format.md, "Repositories in object storage").

Facts this code relies on:
- boto3's default credential chain (environment, shared config and credentials files, profiles,
  instance roles) applies when no key is given.
- A single-part object's ETag is the MD5 of its bytes; a multipart object's is the MD5 of its
  parts' MD5 digests followed by "-<number of parts>" (AWS, SeaweedFS, Ceph RGW and MinIO
  alike, unless the object is encrypted with SSE-KMS/SSE-C, whose ETags are opaque).
- Content-MD5 on every PutObject/UploadPart makes the server refuse a body that arrived damaged,
  and AWS requires it for objects written with an Object Lock retention.
- A multipart upload that was never completed leaves no object behind, only parts that
  AbortMultipartUpload removes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import concurrent.futures
import datetime
import hashlib
import os
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError

# boto3 is imported on first use (Store), not with the module: virt_restore and virt_backup_info
# import this file for their S3 options, and boto3's import alone costs 0.3 to 0.8 s here.
boto3 = None
botocore = None
BOTO3_IMPORT_ERROR = None


def _import_boto3():
    global boto3, botocore, BOTO3_IMPORT_ERROR  # pylint: disable=global-statement
    if boto3 is not None or BOTO3_IMPORT_ERROR is not None:
        return
    try:
        import boto3 as boto3_module
        import botocore.config
        import botocore.exceptions
        boto3 = boto3_module
    except Exception:  # pragma: no cover - reported when an S3 repository is used
        # Exception, not ImportError: a broken pyOpenSSL beside botocore raises AttributeError.
        import traceback
        BOTO3_IMPORT_ERROR = traceback.format_exc()


SCHEME = 's3://'
BUCKET = re.compile(r'^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')
PREFIX_PART = re.compile(r'^[A-Za-z0-9_.+:@=-]{1,200}$')
LOCK_MODES = ('none', 'governance', 'compliance')
MiB = 1024 * 1024
PART_SIZE = 16 * MiB            # each part in memory once; MAX_PARTS_IN_FLIGHT of them at most
MAX_PARTS = 10000               # the S3 limit of parts per upload
MAX_PARTS_IN_FLIGHT = 4
READ_CHUNK = 1 * MiB
# Written by virt_backup_prune into a backup's prefix before it deletes the manifest, deleted last:
# what is left of a backup with this object and without a manifest is an interrupted deletion.
DELETING_MARKER = '.deleting'


class S3Error(VirtError):
    pass


def is_location(text):
    return isinstance(text, str) and text.startswith(SCHEME)


def parse_location(text):
    """(bucket, prefix) of s3://bucket/prefix; the prefix may be empty. Only plain names: the
    prefix becomes part of every key, and its parts of the paths shown to users."""
    rest = text[len(SCHEME):].strip('/')
    bucket, _sep, prefix = rest.partition('/')
    if not BUCKET.match(bucket) or '..' in bucket:
        raise S3Error('S3 location %r: %r is not a bucket name (3 to 63 lower-case letters, digits, dots and '
                      'hyphens)' % (text, bucket))
    parts = [p for p in prefix.split('/') if p]
    for part in parts:
        if not PREFIX_PART.match(part) or part in ('.', '..'):
            raise S3Error('S3 location %r: prefix part %r may hold letters, digits and _ . + : @ = - only, and is '
                          'not . or ..' % (text, part))
    return bucket, '/'.join(parts)


def _b64(digest):
    return base64.b64encode(digest).decode('ascii')


def retain_until(days, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (now + datetime.timedelta(days=days)).replace(microsecond=0)


class Store:
    """One S3 repository location and a client for it. Nothing is sent before the first call."""

    def __init__(self, location, params):
        _import_boto3()
        if boto3 is None:
            raise S3Error('S3 repository %s needs boto3 on the managed host (Debian/Ubuntu: python3-boto3, '
                          'RHEL: python3-boto3, or pip install boto3): %s'
                          % (location, (BOTO3_IMPORT_ERROR or '').strip().splitlines()[-1]))
        self.bucket, self.prefix = parse_location(location)
        self.location = SCHEME + self.bucket + ('/' + self.prefix if self.prefix else '')
        self.endpoint = params.get('s3_endpoint_url')
        if self.endpoint and not re.match(r'https?://[^/?#\s]+(/[^\s]*)?$', self.endpoint):
            # botocore raises a bare ValueError for this, which would fail the module as 'unexpected'
            raise S3Error('S3 repository %s: s3_endpoint_url %r is not an http:// or https:// URL (such as '
                          'https://s3.example.com:9000)' % (self.location, self.endpoint))
        try:
            session = boto3.session.Session(profile_name=params.get('s3_profile') or None)
            config = botocore.config.Config(
                connect_timeout=10, read_timeout=120, retries=dict(max_attempts=3, mode='standard'),
                # Path-style addressing for other servers than AWS: bucket names need no DNS there.
                s3=dict(addressing_style='path' if self.endpoint else 'auto'),
                max_pool_connections=MAX_PARTS_IN_FLIGHT + 2)
            self.client = session.client(
                's3', endpoint_url=self.endpoint or None, region_name=params.get('s3_region') or None,
                aws_access_key_id=params.get('s3_access_key') or None,
                aws_secret_access_key=params.get('s3_secret_key') or None,
                aws_session_token=params.get('s3_session_token') or None, config=config)
        except botocore.exceptions.BotoCoreError as exc:
            raise S3Error('S3 repository %s: cannot set up a client: %s' % (self.location, exc))
        self.where = '%s (endpoint %s)' % (self.location, self.endpoint or 'AWS S3')
        self._versioned = None

    # -- errors -------------------------------------------------------------------------------

    def _call(self, what, method, **kwargs):
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error(what, exc)

    def error(self, what, exc):
        """An S3Error that says what failed, on which repository, and why."""
        if isinstance(exc, S3Error):
            return exc
        why = str(exc)
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            why = ('no credentials: give s3_access_key and s3_secret_key, set AWS_ACCESS_KEY_ID and '
                   'AWS_SECRET_ACCESS_KEY, or name a profile (s3_profile, AWS_PROFILE)')
        elif isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                              botocore.exceptions.ConnectionClosedError)):
            why = 'the endpoint cannot be reached: %s' % exc
        elif isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get('Error', {})
            code = str(error.get('Code', ''))
            status = exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')
            if code in ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken'):
                why = 'the server refused the credentials (%s): check s3_access_key and s3_secret_key' % code
            elif status == 403 and code in ('403', 'Forbidden'):
                why = ('the server refused access (HTTP 403): the credentials are wrong or lack permission on '
                       'bucket %s; check s3_access_key and s3_secret_key' % self.bucket)
            elif code in ('NoSuchBucket',) or (code in ('404', 'NotFound') and what.startswith('checking bucket')):
                why = 'bucket %s does not exist' % self.bucket
            elif code == 'AccessDenied':
                why = 'access denied (%s)' % (error.get('Message') or code)
            else:
                why = '%s: %s' % (code or status, error.get('Message') or exc)
        return S3Error('S3 repository %s: %s failed: %s' % (self.where, what, why))

    # -- keys ---------------------------------------------------------------------------------

    def key(self, parts):
        return '/'.join(([self.prefix] if self.prefix else []) + list(parts))

    def url(self, parts):
        return '%s/%s' % (self.location, '/'.join(parts))

    def check_bucket(self):
        self._call('checking bucket %s' % self.bucket, 'head_bucket')

    def object_lock_enabled(self):
        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except Exception as exc:  # pylint: disable=broad-except
            if isinstance(exc, botocore.exceptions.ClientError) and \
                    'ObjectLockConfigurationNotFound' in str(exc.response.get('Error', {}).get('Code', '')):
                return False
            raise self.error('reading the object lock configuration of bucket %s' % self.bucket, exc)
        return config.get('ObjectLockConfiguration', {}).get('ObjectLockEnabled') == 'Enabled'

    def list(self, parts=()):
        """(key parts below the prefix, size) of every object under parts."""
        return self._listing(parts, 'Size')

    def _listing(self, parts, field):
        """(key parts below the prefix, the listing's field) of every object under parts."""
        base = self.key(parts)
        start = base + '/' if base else ''
        paginator = self.client.get_paginator('list_objects_v2')
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get('Contents', []):
                    yield tuple(item['Key'][len(start):].split('/')), item[field]
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error('listing %s' % (self.url(parts) if parts else 'the repository'), exc)

    def size(self, parts):
        """The size of an object, or None when there is none."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(parts))['ContentLength']
        except Exception as exc:  # pylint: disable=broad-except
            if isinstance(exc, botocore.exceptions.ClientError) and \
                    str(exc.response.get('Error', {}).get('Code')) in ('404', 'NoSuchKey', 'NotFound'):
                return None
            raise self.error('reading %s' % self.url(parts), exc)

    # -- reading ------------------------------------------------------------------------------

    def read_small(self, parts, limit):
        """The bytes of a small object (metadata), at most limit of them; None when it is missing."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(parts))
        except Exception as exc:  # pylint: disable=broad-except
            if isinstance(exc, botocore.exceptions.ClientError) and \
                    str(exc.response.get('Error', {}).get('Code')) in ('404', 'NoSuchKey', 'NotFound'):
                return None
            raise self.error('reading %s' % self.url(parts), exc)
        body = response['Body']
        try:
            if response.get('ContentLength', 0) > limit:
                raise S3Error('%s is larger than %d bytes: not a file this collection wrote' % (self.url(parts), limit))
            data = body.read(limit + 1)
        except S3Error:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error('reading %s' % self.url(parts), exc)
        finally:
            body.close()
        if len(data) > limit:
            raise S3Error('%s is larger than %d bytes: not a file this collection wrote' % (self.url(parts), limit))
        return data

    def download(self, parts, fd, limit, expected_size=None):
        """Stream an object into fd (bounded memory); refuses an object larger than limit or, when
        given, of another size than expected_size. Returns the number of bytes written."""
        url = self.url(parts)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(parts))
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error('reading %s' % url, exc)
        body = response['Body']
        total = 0
        try:
            size = response.get('ContentLength')
            if size is not None and (size > limit or expected_size is not None and size != expected_size):
                raise S3Error('%s holds %d bytes, but its manifest allows %s: the repository may have been damaged '
                              'or tampered with' % (url, size, expected_size if expected_size is not None
                                                    else 'at most %d' % limit))
            for chunk in body.iter_chunks(READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise S3Error('%s is larger than %d bytes' % (url, limit))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except S3Error:
            raise
        except OSError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error('reading %s' % url, exc)
        finally:
            body.close()
        if expected_size is not None and total != expected_size:
            raise S3Error('%s ended after %d of its %d bytes' % (url, total, expected_size))
        return total

    # -- writing ------------------------------------------------------------------------------

    @staticmethod
    def lock_args(lock):
        """PutObject/CreateMultipartUpload arguments of lock = (mode, retain-until) or None."""
        if not lock:
            return {}
        return dict(ObjectLockMode=lock[0].upper(), ObjectLockRetainUntilDate=lock[1])

    def put_bytes(self, parts, data, lock=None):
        digest = hashlib.md5(data).digest()
        response = self._call('writing %s' % self.url(parts), 'put_object', Key=self.key(parts), Body=data,
                              ContentMD5=_b64(digest), **self.lock_args(lock))
        self._check_etag(parts, response.get('ETag'), digest.hex(), len(data))

    def upload(self, parts, fd, size, lock=None):
        """Upload size bytes of fd (from offset 0) as one object, in parts of PART_SIZE or more with at
        most MAX_PARTS_IN_FLIGHT in memory. Every part carries its MD5 (the server refuses a damaged
        one) and the object's ETag is checked against the digests computed here."""
        part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        if size <= part_size:
            self.put_bytes(parts, _pread_all(fd, 0, size), lock)
            return
        url, key = self.url(parts), self.key(parts)
        upload_id = self._call('starting an upload of %s' % url, 'create_multipart_upload', Key=key,
                               **self.lock_args(lock))['UploadId']
        count = -(-size // part_size)
        digests = [None] * count

        def send(number):
            offset = (number - 1) * part_size
            data = _pread_all(fd, offset, min(part_size, size - offset))
            digest = hashlib.md5(data).digest()
            response = self._call('uploading part %d of %s' % (number, url), 'upload_part', Key=key,
                                  UploadId=upload_id, PartNumber=number, Body=data, ContentMD5=_b64(digest))
            digests[number - 1] = digest
            return dict(PartNumber=number, ETag=response['ETag'])

        done = []
        try:
            with concurrent.futures.ThreadPoolExecutor(MAX_PARTS_IN_FLIGHT) as pool:
                pending = set()
                for number in range(1, count + 1):
                    if len(pending) >= MAX_PARTS_IN_FLIGHT:
                        finished, pending = concurrent.futures.wait(
                            pending, return_when=concurrent.futures.FIRST_COMPLETED)
                        done.extend(f.result() for f in finished)
                    pending.add(pool.submit(send, number))
                done.extend(f.result() for f in concurrent.futures.as_completed(pending))
            done.sort(key=lambda p: p['PartNumber'])
            response = self._call('completing the upload of %s' % url, 'complete_multipart_upload', Key=key,
                                  UploadId=upload_id, MultipartUpload=dict(Parts=done))
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # pylint: disable=broad-except
                pass    # the error being raised says what went wrong first; the next run aborts it
            raise
        self._check_etag(parts, response.get('ETag'), '%s-%d' % (hashlib.md5(b''.join(digests)).hexdigest(), count),
                         size)

    def _check_etag(self, parts, etag, expected, size):
        etag = (etag or '').strip('"')
        if re.match(r'^[0-9a-f]{32}(-\d+)?$', etag):
            if etag != expected:
                raise S3Error('%s: the server stored something else than was sent (ETag %s, expected %s)'
                              % (self.url(parts), etag, expected))
            return
        # An opaque ETag (server-side encryption with KMS or customer keys): the size at least.
        stored = self.size(parts)
        if stored != size:
            raise S3Error('%s: the server holds %s bytes, %d were sent' % (self.url(parts), stored, size))

    def abort_uploads(self, parts):
        """Abort the unfinished multipart uploads under parts (debris of a killed run); their count."""
        base = self.key(parts) + '/'
        count = 0
        try:
            paginator = self.client.get_paginator('list_multipart_uploads')
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                for upload in page.get('Uploads', []):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload['Key'],
                                                       UploadId=upload['UploadId'])
                    count += 1
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error('aborting unfinished uploads under %s' % self.url(parts), exc)
        return count

    # -- deleting (virt_backup_prune) ---------------------------------------------------------

    def list_times(self, parts=()):
        """(key parts below the prefix, last-modified time) of every object under parts."""
        return self._listing(parts, 'LastModified')

    def versioned(self):
        """True when the bucket keeps object versions (object lock turns versioning on): a delete
        must then name each version, or it only hides the object behind a delete marker."""
        if self._versioned is None:
            status = self._call('reading the versioning of bucket %s' % self.bucket, 'get_bucket_versioning')
            self._versioned = status.get('Status') in ('Enabled', 'Suspended')
        return self._versioned

    def versions(self, parts):
        """[(key parts below the prefix, version id or None)] of every object (every version and
        delete marker in a versioned bucket) whose key starts with parts + '/'."""
        start = self.key(parts) + '/'
        if not self.versioned():
            return [(tuple(parts) + p, None) for p, _size in self.list(parts)]
        found = []
        try:
            paginator = self.client.get_paginator('list_object_versions')
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get('Versions', []) + page.get('DeleteMarkers', []):
                    rest = tuple(item['Key'][len(start):].split('/'))
                    found.append((tuple(parts) + rest, item.get('VersionId')))
        except Exception as exc:  # pylint: disable=broad-except
            raise self.error('listing the versions under %s' % self.url(parts), exc)
        return found

    def retention(self, parts, version_id=None, now=None):
        """(mode, retain-until time or None) of an object version that cannot be deleted now: its
        Object Lock retention date is later than now ('GOVERNANCE' or 'COMPLIANCE'), or it has a
        legal hold ('LEGAL HOLD', no date); None when nothing holds it (or it is a delete marker)."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        args = dict(Key=self.key(parts))
        if version_id:
            args['VersionId'] = version_id
        try:
            head = self.client.head_object(Bucket=self.bucket, **args)
        except Exception as exc:  # pylint: disable=broad-except
            if isinstance(exc, botocore.exceptions.ClientError) and str(exc.response.get('Error', {}).get('Code')) in (
                    '404', 'NoSuchKey', 'NotFound', '405', 'MethodNotAllowed'):
                return None     # gone meanwhile, or a delete marker (which S3 answers with 405)
            raise self.error('reading the retention of %s' % self.url(parts), exc)
        until = head.get('ObjectLockRetainUntilDate')
        if head.get('ObjectLockMode') and until is not None and until > now:
            return head['ObjectLockMode'], until
        if head.get('ObjectLockLegalHoldStatus') == 'ON':
            return 'LEGAL HOLD', None
        return None

    def delete(self, parts, version_id=None):
        """Delete one object (one version of it when version_id is given)."""
        args = dict(Key=self.key(parts))
        if version_id:
            args['VersionId'] = version_id
        self._call('deleting %s' % self.url(parts), 'delete_object', **args)


def _pread_all(fd, offset, length):
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            raise S3Error('file ended %d bytes early' % length)
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b''.join(chunks)
