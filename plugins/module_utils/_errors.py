# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The one base exception of the engine, and the fixed set of `reason` values a failure carries.

Every error the engine raises is a VirtError (the backup package's own errors included), so a
module catches it once, in VirtModule.run. This file imports nothing of the collection: every
other file, backup/ included, can import it without a cycle.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class VirtError(Exception):
    """A failure explained for the user: what was being done, on which object, and why.

    Engine code raises this; only a module's main() turns it into fail_json, once.
    """

    def __init__(self, msg, action=None, obj=None, code=None, libvirt_message=None, **details):
        super(VirtError, self).__init__(msg)
        self.msg = msg
        self.action = action
        self.obj = obj
        self.code = code
        self.libvirt_message = libvirt_message
        self.details = details

    def after_steps(self, done):
        """The failure of a step that came after others which changed the object (a new
        definition stored, then its start refused): say what was done and report changed,
        as Ansible expects of a task that failed half way."""
        if done:
            self.msg = '%s (already done: %s)' % (self.msg, ', '.join(done))
            self.details['changed'] = True
            self.details.setdefault('actions', list(done))
        return self

    def result(self):
        res = dict(msg=self.msg)
        if self.code is not None:
            res['libvirt_error_code'] = self.code
        if self.libvirt_message:
            res['libvirt_message'] = self.libvirt_message
        res.update(self.details)
        return res


# The `reason` key of a failed result: a short fixed word for playbooks to test (`failed_when`,
# `rescue`), beside `msg` for people. README.md, "Failure reasons", lists the same set.
# Options and input
REASON_INVALID_OPTION = 'invalid option'            # an option is missing, malformed or conflicts with another
REASON_INVALID_SIZE = 'invalid size'                # a size option is not a number of bytes with a known unit
REASON_INVALID_NETWORK_CONFIG = 'invalid network_config'  # network_config is not cloud-init network config
REASON_INVALID_XML = 'invalid XML'                  # XML that parses but is not what libvirt (or the option) accepts
REASON_MALFORMED_XML = 'malformed XML'              # text that is not well-formed XML
REASON_INVALID_IMAGE = 'invalid image'              # a disk image or backing chain is not what the operation needs
REASON_INVALID_DISK = 'invalid disk'                # the disk has no image to act on
REASON_INVALID_DESTINATION = 'invalid destination'  # a copy destination that cannot be used
REASON_NO_IDENTITY = 'no identity'                  # a device XML lacks what identifies the device in the domain
REASON_AMBIGUOUS_DEVICE = 'ambiguous device'        # the device XML matches several devices of the domain
REASON_NO_SCOPE = 'no scope'                        # live and config are both false
REASON_NO_INSTANCE_ID = 'no instance-id'            # cloud-init meta-data without an instance-id
REASON_NO_CAPACITY = 'no capacity'                  # a new volume without capacity, clone_from or upload_src
REASON_NAME_MISMATCH = 'name mismatch'              # the name in the XML differs from the name option
# The objects found
REASON_NOT_FOUND = 'not found'                      # the object the task acts on does not exist
REASON_UNKNOWN_DISK = 'unknown disk'                # the domain has no disk of that name
REASON_CLONE_SOURCE_MISSING = 'clone source missing'  # clone_from names a volume the pool does not have
REASON_UUID_MISMATCH = 'uuid mismatch'              # the object exists with another uuid, which libvirt cannot change
REASON_NAME_CLASH = 'name clash'                    # another object (another uuid) already has the name
REASON_DESTINATION_EXISTS = 'destination exists'    # the file to create exists already
REASON_NOT_A_FILE = 'not a file'                    # the path exists and is not a regular file
REASON_NOT_A_SEED_IMAGE = 'not a seed image'        # the file is not a cloud-init seed image (force replaces it)
REASON_MISSING_FILE = 'missing file'                # a file the task reads does not exist
REASON_MISSING_DIRECTORY = 'missing directory'      # the directory of a file to write does not exist
REASON_MISSING_LIBRARY = 'missing library'          # a Python library the task needs is not installed
# The state of the objects
REASON_DOMAIN_NOT_RUNNING = 'domain not running'    # the action needs a running domain
REASON_DOMAIN_NOT_PERSISTENT = 'domain not persistent'  # the action needs a persistent definition
REASON_POOL_INACTIVE = 'pool inactive'              # the storage pool must be active first
REASON_POOL_NOT_EMPTY = 'pool not empty'            # deleting a pool's storage needs it empty
REASON_CANNOT_CHECK_POOL_EMPTY = 'cannot check pool is empty'  # an inactive pool's volumes cannot be listed
REASON_JOB_RUNNING = 'job running'                  # another block job runs on the disk
REASON_SPLIT_BRAIN = 'split brain'                  # the domain is active on both hosts
REASON_NOT_UPDATABLE_LIVE = 'not updatable live'    # the change cannot be made to the running device
REASON_SHRINK_REFUSED = 'shrink refused'            # the change would make a disk or volume smaller
REASON_WIPE_QCOW2 = 'wipe qcow2'                    # wiping would destroy a qcow2 volume's header
# What the hypervisor or the host refuses
REASON_DEFINE_REFUSED = 'define refused'            # libvirt would refuse (or refused) the definition
REASON_UNSUPPORTED_BY_HYPERVISOR = 'unsupported by the hypervisor'  # the hypervisor cannot run the definition
REASON_INCOMPATIBLE_DESTINATION = 'incompatible destination'  # the destination host cannot run the domain
REASON_STORAGE = 'storage'                          # the destination cannot hold or see the domain's disks
REASON_CREATE_NOT_SUPPORTED = 'create not supported'  # the pool type cannot create volumes (its LUNs are made elsewhere)
REASON_DELETE_NOT_SUPPORTED = 'delete not supported'  # libvirt cannot delete that storage (LUNs of iSCSI, SCSI, mpath pools)
REASON_RESIZE_NOT_SUPPORTED = 'resize not supported'  # the pool type or the libvirt version cannot resize the volume
REASON_STREAMS_NOT_SUPPORTED = 'streams not supported'  # the pool type cannot upload or download volumes
REASON_FORMAT_NOT_SUPPORTED = 'format not supported'  # the pool type cannot create volumes of that format
REASON_BACKING_FILE_NOT_SUPPORTED = 'backing file not supported'  # the pool type cannot create volumes with a backing file
REASON_FORMAT_MISMATCH = 'format mismatch'          # the volume exists with another format, which cannot change
REASON_BACKING_MISMATCH = 'backing mismatch'        # the volume exists with another backing file, which cannot change
REASON_TYPE_MISMATCH = 'type mismatch'              # the pool exists with another type, which cannot change
# What failed while it ran
REASON_UNREACHABLE = 'unreachable'                  # a libvirt daemon cannot be reached
REASON_READ_ERROR = 'read error'                    # reading a file failed
REASON_WRITE_ERROR = 'write error'                  # writing or removing a file failed
REASON_JOB_FAILED = 'job failed'                    # a block job ended without doing its work
REASON_MIGRATION_FAILED = 'migration failed'        # the migration started and failed
REASON_TIMEOUT = 'timeout'                          # a block job did not finish within timeout
REASON_SHUTDOWN_TIMEOUT = 'shutdown timeout'        # the guest did not shut down within timeout
REASON_DETACH_TIMEOUT = 'detach timeout'            # the guest did not release a device within timeout
