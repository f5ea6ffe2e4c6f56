# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""Retention of a backup repository: calendar rules, safe deletion, and synthetic fulls.

Three parts, each usable alone:

- plan(): which backups the rules keep (pure: backup times in, decisions out). The calendar rules
  are the grandfather-father-son rules restic and borg define: each keep_<period> rule keeps the
  newest backup of each of the last N periods (UTC) that hold a backup; the rules add up.
  A backup another kept backup needs (an earlier link of its chain) is kept too, unless the
  oldest part of its chain is merged into a synthetic full (merge=True).
- LocalStore: the few operations retention needs from a repository (list, read, link, delete),
  for a directory repository; S3Store the same for an S3 repository, without merges, with Object
  Lock checked before anything is deleted (hold_locked keeps a locked backup and what it needs).
- Merger: builds a synthetic full beside the old chain, proves it, then switches, as a journal
  that a later run rolls forward or back, so that a crash at any step leaves every kept point
  restorable bit-exact.

Facts this code relies on:
- rename(2) of a file within a directory is atomic, and link(2) gives a second name to the same
  immutable file without copying it (a repository lives on one file system).
- A qcow2 overlay names its backing file relative to its own directory (../<parent>/<disk>.qcow2),
  so a chain directory can be rebuilt elsewhere from links of the same overlays.
- The integrity map of a backup describes the whole disk at that point (an incremental's map
  continues its parent's), so a synthetic full at that point takes the map unchanged.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import datetime
import errno
import json
import os
import shutil
import signal
import stat

from ansible_collections.virtops.libvirt.plugins.module_utils.xml import _document
from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _export, _firmware, _images, _repository, _s3

RULES = ('keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly')
JOURNAL_PREFIX = '.merge-'
# A backup being deleted, after its manifest went: hidden from readers and from the backup
# engine's clean-up of interrupted runs; the next prune removes it without a grace time.
DELETING = '.deleting-'
JOURNAL_SUFFIX = '.json'
# Test hook (tests/functional/test_prune.py): the name of a step after which the process kills
# itself with SIGKILL, to prove that a crash there leaves a repository the next run repairs.
KILL_HOOK = 'VIRTOPS_TEST_PRUNE_KILL_AFTER'


class RetentionError(VirtError):
    pass


def _hook(step):
    if os.environ.get(KILL_HOOK) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# -- the rules -----------------------------------------------------------------------------------

def _period(rule, moment):
    """The period of a UTC time for a rule; keep_last counts backups, not periods."""
    if rule == 'keep_hourly':
        return moment.strftime('%Y-%m-%dT%H')
    if rule == 'keep_daily':
        return moment.strftime('%Y-%m-%d')
    if rule == 'keep_weekly':
        year, week, _day = moment.isocalendar()
        return '%04d-W%02d' % (year, week)
    if rule == 'keep_monthly':
        return moment.strftime('%Y-%m')
    return moment.strftime('%Y')


class Item:
    """What the rules need of one backup."""

    def __init__(self, backup_id, time, chain, parent=None, protected=False, checkpoint=None, size=0):
        self.id = backup_id
        self.size = size
        self.time = time.astimezone(datetime.timezone.utc)
        self.chain = chain
        self.parent = parent
        self.protected = protected
        self.checkpoint = checkpoint

    @classmethod
    def of(cls, backup):
        return cls(backup.id, backup.started, backup.chain, backup.parent,
                   backup.manifest.get('protected') is True, backup.checkpoint,
                   sum(d.get('file_size') or 0 for d in backup.disks))


def select(items, rules):
    """{backup id: [reasons]} of the backups the calendar rules keep.

    rules: {rule: count}; None or 0 leaves a rule out, -1 means every period. Walking from the
    newest backup, a rule keeps a backup when its period differs from the last one the rule
    kept and the rule has periods left (restic's algorithm): the newest backup of each of the
    last N periods that hold one.
    """
    kept = {}
    ordered = sorted(items, key=lambda i: (i.time, i.id), reverse=True)
    for rule in RULES:
        left = rules.get(rule)
        if not left:
            continue
        last = None
        for item in ordered:
            if left == 0:
                break
            period = item.id if rule == 'keep_last' else _period(rule, item.time)
            if period == last:
                continue
            last = period
            kept.setdefault(item.id, []).append(rule if rule == 'keep_last' else '%s (%s)' % (rule, period))
            if left > 0:
                left -= 1
    return kept


def _lineage(item, by_id):
    """item and its ancestors in its chain, newest first; stops where a parent is missing."""
    result = [item]
    while result[-1].parent and result[-1].parent in by_id and len(result) <= len(by_id):
        result.append(by_id[result[-1].parent])
    return result


class Plan:
    """The decisions for the backups of one domain."""

    def __init__(self):
        self.keep = {}          # id -> [reasons]
        self.remove = {}        # id -> 'deleted' | 'merged into <id>'
        self.merges = []        # dicts: chain, full (new root), merged [ids oldest first], moved [ids]
        self.items = {}

    def removed_items(self):
        return sorted((self.items[i] for i in self.remove), key=lambda i: (i.time, i.id))


def plan(items, rules, keep_chains=None, merge=False, served=None, used=None):
    """Decide, for the complete backups of one domain, what stays and what goes.

    Kept: what a rule keeps, protected backups, the newest backup (the next incremental builds on
    it), every backup of the newest keep_chains chains, backups served (served: id -> export names;
    an instant restore runs from them), backups that instant-restored domains of this host still run
    from (used: id -> domain names; also when their export is gone, after a reboot), and every
    backup a kept one depends on.
    With merge, a chain whose oldest backups only serve as dependencies is shortened: its backups
    up to the newest common ancestor of every kept backup are merged into a synthetic full there.
    """
    result = Plan()
    items = sorted(items, key=lambda i: (i.time, i.id))
    result.items = dict((i.id, i) for i in items)
    if not items:
        return result

    def keep(item_id, reason):
        reasons = result.keep.setdefault(item_id, [])
        if reason not in reasons:
            reasons.append(reason)

    for item_id, reasons in select(items, rules).items():
        for reason in reasons:
            keep(item_id, reason)
    for item in items:
        if item.protected:
            keep(item.id, 'protected')
    keep(items[-1].id, 'newest')
    served = served or {}
    for item in items:
        for name in served.get(item.id, ()):
            keep(item.id, 'served by export %s' % name)
    used = used or {}
    for item in items:
        for name in used.get(item.id, ()):
            keep(item.id, 'used by instant-restored domain %s' % name)
    chains = []
    for item in items:
        if item.chain not in chains:
            chains.append(item.chain)
    if keep_chains:
        # Chains in the order of their full backups (ids are times), the newest last.
        for chain in sorted(chains)[max(0, len(chains) - keep_chains):]:
            for item in items:
                if item.chain == chain:
                    keep(item.id, 'keep_chains')

    for chain in chains:
        members = [i for i in items if i.chain == chain]
        by_id = dict((i.id, i) for i in members)
        wanted = [i for i in members if i.id in result.keep]
        if not wanted:
            continue
        lineages = dict((i.id, _lineage(i, by_id)) for i in wanted)
        root = None
        if merge:
            root = _common_ancestor([lineages[i.id] for i in wanted])
            if root is not None and root.parent is None:
                root = None      # the full itself is needed: nothing to merge
            elif root is not None and not all(lineages[i.id][-1].parent is None for i in wanted):
                root = None      # a broken chain (a parent is missing) is left as it is
            elif any(m.id in served or m.id in used for m in members):
                root = None      # a daemon serves images of this chain: they stay where it found them
        for item in wanted:
            if item is root:
                continue         # its ancestors are merged into it, not kept
            for ancestor in lineages[item.id][1:]:
                if ancestor is root:
                    break
                keep(ancestor.id, 'needed by %s' % item.id)
        if root is not None:
            merged = [a.id for a in reversed(_lineage(root, by_id)[1:])]
            keep(root.id, 'synthetic full of chain %s' % chain)
            for merged_id in merged:
                result.remove[merged_id] = 'merged into %s' % root.id
            moved = [i.id for i in members if i.id in result.keep and i.id != root.id]
            result.merges.append(dict(chain=chain, full=root.id, merged=merged, moved=moved))
    for item in items:
        if item.id not in result.keep and item.id not in result.remove:
            result.remove[item.id] = 'deleted'
    return result


def hold_locked(decisions, locked):
    """Keep what Object Lock keeps: locked maps the id of a backup that cannot be deleted yet to a
    text saying until when. Such a backup stays (kept_by that text), and so does every backup it
    depends on that the rules would remove, so that what stays never backs onto something gone.
    Pure: decisions (a Plan) is changed in place and returned."""
    for item_id in sorted(locked):
        if decisions.remove.get(item_id) != 'deleted':
            continue
        del decisions.remove[item_id]
        decisions.keep.setdefault(item_id, []).append(locked[item_id])
        node = decisions.items[item_id]
        seen = 0
        while node.parent and node.parent in decisions.items and seen <= len(decisions.items):
            node, seen = decisions.items[node.parent], seen + 1
            if decisions.remove.get(node.id) == 'deleted':
                del decisions.remove[node.id]
            reasons = decisions.keep.setdefault(node.id, [])
            reason = 'needed by %s' % item_id
            if reason not in reasons:
                reasons.append(reason)
    return decisions


def lock_text(lock):
    """kept_by text of an Object Lock hold: (mode, retain-until time or None)."""
    mode, until = lock
    if until is None:
        return 'object lock: %s' % mode.lower()
    return 'object lock (%s) until %s' % (mode.lower(), _repository.isoformat(until))


def _common_ancestor(lineages):
    """The newest backup in every lineage (each newest first), or None."""
    common = None
    shortest = min(len(x) for x in lineages)
    for depth in range(1, shortest + 1):
        candidate = lineages[0][-depth]
        if all(x[-depth] is candidate for x in lineages):
            common = candidate
        else:
            break
    return common


# -- the store -----------------------------------------------------------------------------------

def remove_tree_at(parent_fd, name):
    """Remove parent/name and everything below it through descriptors, never following a link
    (a link is removed as a link). Nothing outside parent/name can be touched."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            os.unlink(name, dir_fd=parent_fd)
            return
        raise
    try:
        for entry in os.listdir(fd):
            if _repository.real_dir(entry, fd):
                remove_tree_at(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def backup_files(manifest):
    """Path parts, inside a backup directory, of every file its manifest names (manifest excluded):
    exactly the names the format defines, nothing found by listing."""
    files = []
    for key in ('domain_xml', 'checkpoint_xml'):
        if manifest.get(key):
            files.append((manifest[key],))
    for disk in manifest['disks']:
        files.append((disk['image'],))
        files.append((disk['integrity']['map'],))
    for parts, _entry in _firmware._entries(manifest.get('firmware') or {}):  # pylint: disable=protected-access
        files.append(tuple(parts))
    return files


class LocalStore:
    """A directory repository, seen through the operations retention needs. Every path is opened
    below the repository root, component by component, without following links."""

    object_storage = False

    def __init__(self, repository):
        self.repo = repository
        self.root = repository.path

    def label(self, *parts):
        return os.path.join(self.root, *parts)

    def _dir(self, parts):
        return _repository.open_under(self.root, list(parts), os.O_RDONLY | os.O_DIRECTORY)

    def domains(self):
        return self.repo.domains()

    def backups(self, domain, errors=None):
        return self.repo.backups(domain, errors)

    def lock(self, domain):
        return self.repo.lock(domain)

    def served(self, domain):
        """{backup id: [export names]} of the exports (virt_backup_export, instant restores) that serve
        a backup of domain from this repository, alive or not: a stopped one is started again on
        the next run of its task, and an instant restore's domain needs its point until a pivot."""
        served = {}
        for name in _export.listing():
            try:
                state = _export.current(name)
            except _export.ExportError:
                continue
            # By path: a copy of this repository (same id) elsewhere is another set of files.
            if state and not state.get('broken') and state.get('domain') == domain \
                    and isinstance(state.get('repository'), str) \
                    and os.path.realpath(state['repository']) == os.path.realpath(self.root):
                served.setdefault(state.get('backup'), []).append(name)
        return served

    def unlock(self, domain, fd):
        self.repo.unlock(domain, fd)

    def restored_from(self, conn, domain):
        """{backup id: [domain names]} of the domains defined on conn (a libvirt connection) that an
        instant restore made from a backup of domain in this repository (by path, or by repository
        id: the same files mounted elsewhere) and whose disks still back onto its export. The export
        state in /run is gone after a reboot; the domain's definition is not, and the next run of
        its virt_restore task serves that point again."""
        import libvirt     # only with a connection, which the module has checked
        # Imported here: _instant builds on the restore code, which retention does not need otherwise.
        from ansible_collections.virtops.libvirt.plugins.module_utils.backup import _instant
        found = {}
        for dom in conn.listAllDomains(0):
            try:
                texts = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)]
                if dom.isActive():
                    texts.append(dom.XMLDesc(0))
                name = dom.name()
            except libvirt.libvirtError:
                continue        # undefined meanwhile
            for text in texts:
                root = _document.parse(text, 'the definition of domain %s' % name)
                marker = root.find('./metadata/{%s}restore' % _instant.METADATA_NS)
                if marker is None or marker.get('domain') != domain or not marker.get('backup'):
                    continue
                here = isinstance(marker.get('repository'), str) and \
                    os.path.realpath(marker.get('repository')) == os.path.realpath(self.root)
                if not here and marker.get('repository_id') != self.repo.id:
                    continue
                try:
                    socket = _export.socket_path(marker.get('export') or '')
                except _export.ExportError:
                    continue
                if any(host.get('socket') == socket for host in root.iterfind('./devices/disk//host')):
                    names = found.setdefault(marker.get('backup'), [])
                    if name not in names:
                        names.append(name)
        return found

    def partials(self, domain):
        """(chain, name) of backup directories without a manifest: debris of interrupted runs
        (name: the backup id), or of an interrupted deletion (name: .deleting-<backup id>)."""
        found = []
        ddir = self.repo.domain_dir(domain)
        if not _repository.real_dir(ddir):
            return found
        for chain in sorted(os.listdir(ddir)):
            cdir = os.path.join(ddir, chain)
            if chain.startswith('.') or not _repository.BACKUP_ID.match(chain) or not _repository.real_dir(cdir):
                continue
            for bid in sorted(os.listdir(cdir)):
                bdir = os.path.join(cdir, bid)
                if bid.startswith(DELETING) and _repository.BACKUP_ID.match(bid[len(DELETING):]) \
                        and _repository.real_dir(bdir):
                    found.append((chain, bid))
                elif _repository.BACKUP_ID.match(bid) and _repository.real_dir(bdir) \
                        and not os.path.lexists(os.path.join(bdir, _repository.MANIFEST)):
                    found.append((chain, bid))
        return found

    def has_manifest(self, domain, chain, backup_id):
        try:
            manifest = _repository.load_manifest(self.label(domain, chain, backup_id))
        except (_repository.RepositoryError, OSError):
            return False
        return manifest['id'] == backup_id and manifest['chain'] == chain

    def remove_backup(self, domain, chain, backup_id, hook=None):
        """Delete a backup: its manifest first (from then on it is debris, never a backup that
        looks whole), then its files and directory; the chain directory when it is empty."""
        for name in (domain, chain, backup_id):
            _repository.check_name('name', name)
        cfd = self._dir([domain, chain])
        with self._removing_from_chain(domain, chain, cfd):
            if _repository.real_dir(backup_id, cfd):
                bfd = os.open(backup_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cfd)
                try:
                    try:
                        os.unlink(_repository.MANIFEST, dir_fd=bfd)
                    except OSError as exc:
                        if exc.errno != errno.ENOENT:
                            raise
                    os.fsync(bfd)
                finally:
                    os.close(bfd)
                gone = DELETING + backup_id
                remove_tree_at(cfd, gone)       # left by an earlier deletion of the same id
                os.rename(backup_id, gone, src_dir_fd=cfd, dst_dir_fd=cfd)
                os.fsync(cfd)
                if hook:
                    hook()
                remove_tree_at(cfd, gone)

    @contextlib.contextmanager
    def _removing_from_chain(self, domain, chain, cfd):
        """Around the removal of an entry of the chain directory open at cfd (closed here): the
        directory synced after it, and removed too when the entry was its last."""
        try:
            yield
            os.fsync(cfd)
            empty = not os.listdir(cfd)
        finally:
            os.close(cfd)
        if empty:
            self.remove_chain_dir(domain, chain)

    def remove_chain_tree(self, domain, chain):
        """Remove a chain directory whole, whatever it holds (a merge's new chain undone, or what is
        left of its old chain); nothing when it is not there."""
        if not os.path.lexists(self.label(domain, chain)):
            return
        dfd = self._dir([domain])
        try:
            remove_tree_at(dfd, chain)
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove_chain_dir(self, domain, chain):
        dfd = self._dir([domain])
        try:
            try:
                os.rmdir(chain, dir_fd=dfd)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                    raise
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove_partial(self, domain, chain, backup_id):
        try:
            cfd = self._dir([domain, chain])
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return      # went with its chain (a merge removes the old chain directory whole)
            raise
        with self._removing_from_chain(domain, chain, cfd):
            remove_tree_at(cfd, backup_id)

    def write_manifest(self, domain, chain, backup_id, manifest):
        """Write a manifest by atomic rename (new file, fsync, rename, fsync of the directory)."""
        _repository.validate_manifest(manifest, self.label(domain, chain, backup_id, _repository.MANIFEST))
        bfd = self._dir([domain, chain, backup_id])
        os.close(bfd)    # proves the directory is a real one below the root (no link on the way)
        _repository.write_file(self.label(domain, chain, backup_id, _repository.MANIFEST),
                               json.dumps(manifest, indent=2, sort_keys=True) + '\n')

    def make_dir(self, parts):
        parent = self._dir(parts[:-1])
        try:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
            if not _repository.real_dir(parts[-1], parent):
                raise RetentionError('%s is not a directory' % self.label(*parts))
            os.fsync(parent)
        finally:
            os.close(parent)

    def link(self, src_parts, dst_parts):
        """A second name for a regular file of the repository (no copy; a link is refused)."""
        sfd = self._dir(src_parts[:-1])
        try:
            dfd = self._dir(dst_parts[:-1])
            try:
                st = os.lstat(src_parts[-1], dir_fd=sfd)
                if not stat.S_ISREG(st.st_mode):
                    raise RetentionError('%s is not a regular file; it is not used' % self.label(*src_parts))
                os.link(src_parts[-1], dst_parts[-1], src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def create(self, parts):
        """A new private file (0600 from its first byte), opened read-write; returns the fd."""
        return _repository.open_under(self.root, list(parts), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    def journals(self, domain):
        ddir = self.repo.domain_dir(domain)
        if not _repository.real_dir(ddir):
            return []
        return sorted(n for n in os.listdir(ddir) if n.startswith(JOURNAL_PREFIX) and n.endswith(JOURNAL_SUFFIX))

    def read_journal(self, domain, name):
        try:
            data = json.loads(_repository.read_small(self.repo.domain_dir(domain), [name], 1 << 20).decode('utf-8'))
        except (ValueError, OSError, _repository.RepositoryError) as exc:
            raise RetentionError('merge journal %s is unreadable: %s' % (self.label(domain, name), exc))
        for key in ('old_chain', 'full'):
            if not isinstance(data.get(key), str) or not _repository.BACKUP_ID.match(data[key]):
                raise RetentionError('merge journal %s: field %s is not a backup id' % (self.label(domain, name), key))
        if not isinstance(data.get('checkpoints'), list) or not all(
                isinstance(c, str) and _repository.CHECKPOINT_NAME.match(c) for c in data['checkpoints']):
            raise RetentionError('merge journal %s: field checkpoints is not a list of checkpoint names'
                                 % self.label(domain, name))
        return data

    def write_journal(self, domain, name, data):
        _repository.write_file(os.path.join(self.repo.domain_dir(domain), name),
                               json.dumps(data, indent=2, sort_keys=True) + '\n')

    def remove_journal(self, domain, name):
        dfd = self._dir([domain])
        try:
            os.unlink(name, dir_fd=dfd)
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def partial_time(self, domain, chain, name):
        """When a backup directory without a manifest was started (its id): the age incomplete_grace
        applies to."""
        return backup_time(name)

    def locks(self, domain, backups):
        """A directory has no Object Lock: nothing holds a backup."""
        return {}


class S3Store:
    """An S3 repository (_copy.S3Repo, opened) seen through the operations retention needs.

    The manifests are read into the S3Repo's scratch mirror and validated there as a directory's.
    Object storage has no lock, no rename and no hard link: nothing is locked while a prune runs (a
    copy writes each backup's manifest last, and a prune only deletes backups whose manifest it
    read), a backup is deleted manifest first (every version of it in a versioned bucket) and then
    its other objects, and merges and protection flags are refused by the options. Objects of a
    backup without its manifest (which every reader ignores) are what an interrupted deletion left,
    removed by the next run (its marker says so), or what a copy left, removed once the newest of
    them is older than incomplete_grace, so that a copy running at the same time keeps what it has
    uploaded so far. Object Lock is honoured: a backup
    any of whose objects is under retention or legal hold is kept whole and reported (locks)."""

    object_storage = True

    def __init__(self, s3repo):
        self.s3 = s3repo
        self.store = s3repo.store
        self.root = s3repo.label
        self.repo = s3repo.repo
        self.skipped = {}       # domain -> [{chain, id, lock}] of locked partial backups
        self._mirrored = set()
        self._listings = {}
        self._lock_enabled = None

    def label(self, *parts):
        return self.store.url(parts)

    def domains(self):
        return self.s3.domains()

    def backups(self, domain, errors=None):
        if domain not in self._mirrored:
            self.s3.mirror_manifests([domain])
            self._mirrored.add(domain)
        return self.repo.backups(domain, errors)

    def lock(self, domain):
        return None

    def unlock(self, domain, fd):
        pass

    def served(self, domain):
        return {}       # exports and instant restores need a directory repository

    def journals(self, domain):
        return []       # merges are refused for object storage

    def _objects(self, domain):
        """{(chain, backup id): {file parts: last modified}} of the backup-shaped keys of domain."""
        if domain not in self._listings:
            found = {}
            for parts, modified in self.store.list_times((domain,)):
                if len(parts) < 3 or not _repository.BACKUP_ID.match(parts[0]) \
                        or not _repository.BACKUP_ID.match(parts[1]):
                    continue
                found.setdefault((parts[0], parts[1]), {})[tuple(parts[2:])] = modified
            self._listings[domain] = found
        return self._listings[domain]

    def partials(self, domain):
        """(chain, backup id) of backups with objects but no manifest, except locked ones (in skipped)."""
        found = []
        self.skipped[domain] = []
        for (chain, bid), files in sorted(self._objects(domain).items()):
            if (_repository.MANIFEST,) in files:
                continue
            lock = self._lock_of((domain, chain, bid))
            if lock is not None:
                self.skipped[domain].append(dict(chain=chain, id=bid, lock=lock))
                continue
            found.append((chain, bid))
        return found

    def partial_time(self, domain, chain, name):
        """The newest upload of what is left of that backup (a copy still running is recent); the
        epoch for the rest of a deletion (its marker is there), which the next run finishes at once."""
        files = self._objects(domain).get((chain, name), {})
        if (_s3.DELETING_MARKER,) in files:
            return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return max(files.values())

    def _lock_of(self, parts):
        """The latest retention (mode, until) among the object versions under parts, or None."""
        if self._lock_enabled is None:
            self._lock_enabled = self.store.object_lock_enabled()
        if not self._lock_enabled:
            return None
        holds = [h for h in (self.store.retention(p, v) for p, v in self.store.versions(parts)) if h is not None]
        if not holds:
            return None
        dated = [h for h in holds if h[1] is not None]
        return max(dated, key=lambda h: h[1]) if dated else holds[0]

    def locks(self, domain, backups):
        """{backup id: (mode, until)} of the backups (Items) that Object Lock keeps whole for now:
        checked for every object of every backup before anything is deleted."""
        found = {}
        for item in backups:
            lock = self._lock_of((domain, item.chain, item.id))
            if lock is not None:
                found[item.id] = lock
        return found

    def remove_backup(self, domain, chain, backup_id, hook=None):
        """A deletion marker, then every version of the manifest (from then on no reader sees the
        backup, and the next run finishes an interrupted deletion without waiting for
        incomplete_grace), then every other object under the backup's prefix, the marker last."""
        prefix = (domain, chain, backup_id)
        self.store.put_bytes(prefix + (_s3.DELETING_MARKER,), b'deleted by virt_backup_prune\n')
        objects = self.store.versions(prefix)
        manifest = prefix + (_repository.MANIFEST,)
        for parts, version in objects:
            if parts == manifest:
                self.store.delete(parts, version)
        if hook:
            hook()
        self._delete_rest(prefix, [o for o in objects if o[0] != manifest])

    def _delete_rest(self, prefix, objects):
        marker = prefix + (_s3.DELETING_MARKER,)
        for parts, version in sorted(objects, key=lambda o: o[0] == marker):
            self.store.delete(parts, version)
        self._listings.pop(prefix[0], None)
        shutil.rmtree(os.path.join(self.s3.scratch, *prefix), ignore_errors=True)

    def remove_partial(self, domain, chain, backup_id):
        prefix = (domain, chain, backup_id)
        self._delete_rest(prefix, self.store.versions(prefix))


# -- synthetic fulls -----------------------------------------------------------------------------

def journal_name(old_chain):
    return '%s%s%s' % (JOURNAL_PREFIX, old_chain, JOURNAL_SUFFIX)


class Merger:
    """Merge the oldest backups of a chain into a synthetic full, as a journal of steps:

    1. journal written (<domain>/.merge-<old chain>.json, ignored by readers);
    2. the new chain directory <domain>/<full>/<full>/ built beside the old chain: each disk's
       image flattened from the old chain into a new file, the other files linked;
    3. each new image hashed and compared with the point's integrity map;
    4. the new full's manifest written (from now on the point exists twice, both whole);
    5. each later backup rebuilt in the new chain from links of its files, its manifest last;
    6. the old chain's manifests deleted (newest first), then its directory;
    7. (by the caller) the merged backups' checkpoints deleted; the journal removed.

    recover() finishes an interrupted merge: forward when the new full's manifest exists (every
    point is then in the new chain, or still in the old one), back otherwise (the old chain is
    untouched until step 6).
    """

    def __init__(self, store, domain, workdir=None):
        self.store = store
        self.domain = domain
        self.workdir = workdir

    def start(self, backups, merge):
        """backups: the domain's Backup objects; merge: one entry of Plan.merges."""
        by_id = dict((b.id, b) for b in backups if b.chain == merge['chain'])
        checkpoints = [by_id[i].checkpoint for i in merge['merged'] if by_id[i].checkpoint]
        journal = dict(old_chain=merge['chain'], full=merge['full'], merged=merge['merged'], moved=merge['moved'],
                       checkpoints=checkpoints, domain_uuid=by_id[merge['full']].manifest.get('domain_uuid'),
                       started=_repository.isoformat(_repository.utcnow()))
        lineage = self._lineage(by_id, merge['full'])
        for backup in lineage:
            if backup.manifest.get('encryption'):
                # The synthetic full would be written without encryption: refused, nothing changed.
                raise RetentionError('backup %s is encrypted: a synthetic full of its chain is not made (merge '
                                     'writes plain images); prune this repository with merge: false' % backup.id)
        for disk in lineage[0].disks:
            # Headers, sizes and maps proved before anything is written: an image this collection
            # cannot open (or a damaged map) fails the merge with nothing changed.
            _repository.check_point(lineage, disk['name'])
        name = journal_name(merge['chain'])
        self.store.write_journal(self.domain, name, journal)
        _hook('journal')
        try:
            self._build_full(lineage)
        except BaseException:
            # Before the new full's manifest: undo (remove the new chain directory, the journal).
            if not self.store.has_manifest(self.domain, merge['full'], merge['full']):
                self.recover(name)
            raise
        return self.finish(name, journal)

    def _lineage(self, by_id, full_id):
        lineage = []
        node = by_id[full_id]
        while node is not None and len(lineage) <= len(by_id):
            lineage.append(node)
            node = by_id.get(node.parent) if node.parent else None
        if lineage[-1].parent is not None or lineage[-1].level != 'full':
            raise RetentionError('backup %s of domain %s: its chain has no full backup; nothing was merged'
                                 % (full_id, self.domain))
        return lineage

    def recover(self, name):
        """Finish or undo the merge a journal describes; returns (journal, 'forward'|'back')."""
        journal = self.store.read_journal(self.domain, name)
        new_chain = full = journal['full']
        if new_chain == journal['old_chain']:
            raise RetentionError('merge journal %s names chain %s as old and new; it is not used'
                                 % (self.store.label(self.domain, name), new_chain))
        if self.store.has_manifest(self.domain, new_chain, full):
            manifest = _repository.load_manifest(self.store.label(self.domain, new_chain, full))
            merged = (manifest.get('synthetic') or {}).get('merged') or [None]
            if manifest['level'] != 'full' or merged[0] != journal['old_chain']:
                raise RetentionError('merge journal %s: backup %s is not the synthetic full of chain %s; the journal '
                                     'is not used and nothing was changed' % (
                                         self.store.label(self.domain, name), full, journal['old_chain']))
            return self.finish(name, journal), 'forward'
        # Before step 4: the new chain holds nothing whole; the old one is untouched.
        ndir = self.store.label(self.domain, new_chain)
        if _repository.real_dir(ndir) and any(self.store.has_manifest(self.domain, new_chain, b)
                                              for b in os.listdir(ndir) if _repository.BACKUP_ID.match(b)):
            raise RetentionError('merge journal %s: chain %s holds complete backups, but not the synthetic full the '
                                 'journal announces; the journal is not used and nothing was changed'
                                 % (self.store.label(self.domain, name), new_chain))
        self.store.remove_chain_tree(self.domain, new_chain)
        self.store.remove_journal(self.domain, name)
        return journal, 'back'

    def finish(self, name, journal):
        """Steps 5 and 6; the caller deletes the checkpoints and then the journal (finish_journal)."""
        old, full = journal['old_chain'], journal['full']
        errors = []
        old_backups = [b for b in self.store.backups(self.domain, errors) if b.chain == old]
        by_id = dict((b.id, b) for b in old_backups)
        descendants = []
        for backup in old_backups:
            node, seen = backup, 0
            while node is not None and node.id != full and seen <= len(by_id):
                node, seen = by_id.get(node.parent) if node.parent else None, seen + 1
            if node is not None and backup.id != full:
                descendants.append(backup)
        first = True
        for backup in descendants:    # oldest first: a parent is whole before its children
            if self.store.has_manifest(self.domain, full, backup.id):
                continue
            self._relink(backup, full)
            if first:
                _hook('move')
                first = False
        _hook('moved')
        first = True
        for backup in sorted(old_backups, key=lambda b: (b.manifest['started'], b.id), reverse=True):
            self.store.remove_backup(self.domain, old, backup.id, hook=(lambda: _hook('unmanifest')) if first else None)
            first = False
        # Debris left in the old chain (directories whose manifest is gone) goes with it.
        self.store.remove_chain_tree(self.domain, old)
        _hook('old-removed')
        return journal

    def finish_journal(self, name):
        self.store.remove_journal(self.domain, name)

    def _build_full(self, lineage):
        store, domain = self.store, self.domain
        backup = lineage[0]
        full_id = backup.id
        store.make_dir([domain, full_id])
        store.make_dir([domain, full_id, full_id])
        target = [domain, full_id, full_id]
        first = True
        for disk in backup.disks:
            expected = _repository.check_point(lineage, disk['name'])
            fd = store.create(target + [disk['image']])
            try:
                with _repository.open_chain(lineage, disk['name']) as chain:
                    _images.convert(chain, fd, store.label(*(target + [disk['image']])), 'qcow2',
                                    disk['virtual_size'])
                os.fsync(fd)
            finally:
                os.close(fd)
            if first:
                _hook('image')
                first = False
            layer = _images.open_layer(store.label(*(target + [disk['image']])), disk['virtual_size'])
            with _images.ImageChain([layer]) as merged:
                actual = _images.hash_image(merged, disk['virtual_size'], disk['integrity']['block_size'],
                                            workdir=self.workdir, algorithm=disk['integrity']['algorithm'])
            where = actual.first_difference(expected)
            if where is not None:
                raise RetentionError('the synthetic full of backup %s, disk %s, differs from its integrity data at '
                                     'offset %d; the old chain is kept' % (full_id, disk['name'], where))
        _hook('verified')
        manifest = json.loads(json.dumps(backup.manifest))
        for parts in backup_files(manifest):
            if parts[0] in [d['image'] for d in manifest['disks']]:
                continue
            if len(parts) > 1:
                store.make_dir(target + list(parts[:-1]))
            store.link([domain, backup.chain, full_id] + list(parts), target + list(parts))
        merged = [b.id for b in reversed(lineage[1:])]
        original_level = manifest['level']
        manifest.update(level='full', parent=None, chain=full_id, since_checkpoint=None,
                        reason='synthetic full: %s backup %s with %s merged into it by virt_backup_prune'
                        % (original_level, full_id, ', '.join(merged)),
                        synthetic=dict(merged=merged, level=original_level,
                                       time=_repository.isoformat(_repository.utcnow())))
        for disk in manifest['disks']:
            disk['backing'] = None
            if disk.get('level') is not None:
                disk['level'] = 'full'
            disk['file_size'] = os.lstat(store.label(*(target + [disk['image']]))).st_size
        store.write_manifest(domain, full_id, full_id, manifest)
        _hook('full')

    def _relink(self, backup, new_chain):
        """Rebuild a later backup in the new chain from links of its files (its overlays back onto
        ../<parent>/<disk>.qcow2, which the new chain holds), its manifest written last."""
        store, domain = self.store, self.domain
        if os.path.lexists(store.label(domain, new_chain, backup.id)):
            cfd = store._dir([domain, new_chain])  # pylint: disable=protected-access
            try:
                remove_tree_at(cfd, backup.id)
            finally:
                os.close(cfd)
        target = [domain, new_chain, backup.id]
        store.make_dir(target)
        manifest = json.loads(json.dumps(backup.manifest))
        for parts in backup_files(manifest):
            if len(parts) > 1:
                store.make_dir(target + list(parts[:-1]))
            store.link([domain, backup.chain, backup.id] + list(parts), target + list(parts))
        manifest['chain'] = new_chain
        store.write_manifest(domain, new_chain, backup.id, manifest)


# -- the run -----------------------------------------------------------------------------------

def parse_duration(text):
    """Seconds of '36h', '7d', '90m', '1w', '45s' or a plain number of seconds."""
    units = dict(s=1, m=60, h=3600, d=86400, w=604800)
    value = str(text).strip()
    try:
        if value and value[-1] in units:
            return int(value[:-1]) * units[value[-1]]
        return int(value)
    except ValueError:
        raise RetentionError('%r is not a duration (a number with an optional unit s, m, h, d or w)' % (text,))


def backup_time(backup_id):
    """The UTC time a backup id names (its start)."""
    return datetime.datetime.strptime(backup_id.split('-')[0], '%Y%m%dT%H%M%SZ').replace(
        tzinfo=datetime.timezone.utc)


def describe_item(item, reasons=None, action=None):
    entry = dict(id=item.id, chain=item.chain, time=_repository.isoformat(item.time), parent=item.parent,
                 checkpoint=item.checkpoint, protected=item.protected, size=item.size)
    if reasons is not None:
        entry['kept_by'] = list(reasons)
    if action is not None:
        entry['action'] = action
    return entry


class Pruner:
    """Apply retention to the domains of a repository (one lock per domain while it works).

    checkpoints: None, or an object with existing(domain, domain_uuid, names) -> the names among
    names that exist as checkpoints of that very domain on this host, and delete(domain, name).
    restored_from: None, or a function of a domain name -> {backup id: [names of instant-restored
    domains that run from it]} (LocalStore.restored_from through the module's connection).
    """

    def __init__(self, store, rules, keep_chains=None, merge=False, protect=(), unprotect=(),
                 incomplete_grace=86400, checkpoints=None, check_mode=False, now=None, workdir=None,
                 restored_from=None):
        self.store = store
        self.rules = rules
        self.keep_chains = keep_chains
        self.merge = merge
        self.protect = set(protect or ())
        self.unprotect = set(unprotect or ())
        self.grace = incomplete_grace
        self.checkpoints = checkpoints
        self.check_mode = check_mode
        self.now = now or _repository.utcnow()
        self.workdir = workdir
        self.restored_from = restored_from

    def run(self, domain):
        fd = None if self.check_mode else self.store.lock(domain)
        try:
            return self._run(domain)
        finally:
            if fd is not None:
                self.store.unlock(domain, fd)

    def _run(self, domain):
        out = dict(name=domain, kept=[], removed=[], merges=[], protected=[], unprotected=[],
                   checkpoints_deleted=[], incomplete_removed=[], recovered=[], changed=False)
        merger = Merger(self.store, domain, self.workdir)
        for name in self.store.journals(domain):
            journal = self.store.read_journal(domain, name)
            out['changed'] = True
            if self.check_mode:
                out['recovered'].append(dict(journal=self.store.label(domain, name), chain=journal['old_chain'],
                                             full=journal['full'], direction='pending'))
                continue
            journal, direction = merger.recover(name)
            if direction == 'forward':
                out['checkpoints_deleted'] += self._delete_checkpoints(domain, journal.get('domain_uuid'),
                                                                       journal['checkpoints'])
                merger.finish_journal(name)
            out['recovered'].append(dict(journal=self.store.label(domain, name), chain=journal['old_chain'],
                                         full=journal['full'], direction=direction))
        if out['recovered'] and self.check_mode:
            # The repository is between two states until the merge is resolved: a prediction of
            # the rules would be of neither. The next real run resolves it first, then applies them.
            return out
        errors = []
        backups = self.store.backups(domain, errors)
        if errors:
            raise RetentionError('domain %s: the repository holds backups that cannot be read (%s); a backup that a '
                                 'kept one depends on could be among them, so nothing of this domain was removed'
                                 % (domain, '; '.join(errors)))
        by_id = dict((b.id, b) for b in backups)
        unknown = sorted((self.protect | self.unprotect) - set(by_id))
        if unknown and by_id:
            raise RetentionError('domain %s has no backup %s in repository %s; nothing was changed'
                                 % (domain, ', '.join(unknown), self.store.root))
        items = [Item.of(b) for b in backups]
        for item in items:
            wanted = True if item.id in self.protect else False if item.id in self.unprotect else item.protected
            if wanted != item.protected:
                out['protected' if wanted else 'unprotected'].append(item.id)
                item.protected = wanted
        used = self.restored_from(domain) if self.restored_from is not None else None
        decisions = plan(items, self.rules, self.keep_chains, self.merge, self.store.served(domain), used)
        # Object Lock: every object of every backup to delete is checked before any is deleted, so
        # that a lock never leaves a backup half deleted; check mode predicts the same way.
        locks = self.store.locks(domain, [decisions.items[i] for i in sorted(decisions.remove)
                                          if decisions.remove[i] == 'deleted'])
        hold_locked(decisions, dict((i, lock_text(lock)) for i, lock in locks.items()))
        uuid = next((b.manifest.get('domain_uuid') for b in reversed(backups) if b.manifest.get('domain_uuid')), None)
        for item in sorted(items, key=lambda i: (i.time, i.id)):
            if item.id in decisions.keep:
                out['kept'].append(describe_item(item, decisions.keep[item.id]))
            else:
                out['removed'].append(describe_item(item, action=decisions.remove[item.id]))
        out['merges'] = decisions.merges
        partials = [(c, b) for c, b in self.store.partials(domain)
                    if b.startswith(DELETING) or (self.now - self.store.partial_time(domain, c, b)).total_seconds()
                    > self.grace]
        if self.store.object_storage:
            by_item = dict((i.id, i) for i in items)
            out['locked'] = [dict(describe_item(by_item[i]), mode=lock[0].lower(),
                                  until=_repository.isoformat(lock[1]) if lock[1] else None)
                             for i, lock in sorted(locks.items()) if i in decisions.keep]
            out['locked'] += [dict(chain=left['chain'], id=left['id'], incomplete=True, mode=left['lock'][0].lower(),
                                   until=_repository.isoformat(left['lock'][1]) if left['lock'][1] else None)
                              for left in self.store.skipped.get(domain, [])]
        out['incomplete_removed'] = [self.store.label(domain, c, b) for c, b in partials]
        removed = decisions.removed_items()
        gone_checkpoints = [i.checkpoint for i in removed if i.checkpoint]
        existing = self._existing_checkpoints(domain, uuid, gone_checkpoints)
        out['changed'] = bool(out['changed'] or removed or partials or out['protected'] or out['unprotected']
                              or existing)
        if self.check_mode:
            out['checkpoints_deleted'] += existing
            return out

        # Protection first: a backup the user protects in this run is safe before anything goes.
        for backup_id in out['protected'] + out['unprotected']:
            backup = by_id[backup_id]
            manifest = json.loads(json.dumps(backup.manifest))
            if backup_id in out['protected']:
                manifest['protected'] = True
            else:
                manifest.pop('protected', None)
            self.store.write_manifest(domain, backup.chain, backup.id, manifest)
            backup.manifest = manifest
        # Checkpoints of deleted backups, but not yet those of merged ones (their chain still
        # holds them until the synthetic full is in place): the next incremental of the newest
        # chain never needs a removed backup's checkpoint.
        merged_ids = set(i for m in decisions.merges for i in m['merged'])
        out['checkpoints_deleted'] += self._delete_checkpoints(
            domain, uuid, [c for c in existing if c not in set(by_id[i].checkpoint for i in merged_ids)])
        # Deleted backups, newest first: what stays never backs onto something already gone.
        first = True
        for item in reversed(removed):
            if decisions.remove[item.id] != 'deleted':
                continue
            self.store.remove_backup(domain, item.chain, item.id, hook=(lambda: _hook('delete')) if first else None)
            first = False
        for merge in decisions.merges:
            current = self.store.backups(domain)
            journal = merger.start(current, merge)
            out['checkpoints_deleted'] += self._delete_checkpoints(
                domain, uuid, [c for c in journal['checkpoints'] if c in existing])
            merger.finish_journal(journal_name(merge['chain']))
        for chain, backup_id in partials:
            self.store.remove_partial(domain, chain, backup_id)
        return out

    def _existing_checkpoints(self, domain, uuid, names):
        if self.checkpoints is None or not names:
            return []
        return self.checkpoints.existing(domain, uuid, names)

    def _delete_checkpoints(self, domain, uuid, names):
        deleted = []
        for name in self._existing_checkpoints(domain, uuid, names):
            self.checkpoints.delete(domain, name)
            deleted.append(name)
        if deleted:
            _hook('checkpoints')
        return deleted
