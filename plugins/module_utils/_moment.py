# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""What checkpoints and snapshots share (libvirt calls both "moments" of a domain): reading
their metadata elements, the edit of their <description>, and the part of the virt_checkpoint
and virt_snapshot managers that is the same for both.

Facts this code relies on (libvirt 9.0): libvirt writes a checkpoint's and a snapshot's XML with
<name> and <description> first and the copy of the domain definition after <creationTime>;
checkpoints and snapshots are named within their domain.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.virtops.libvirt.plugins.module_utils._errors import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import domain_label, flag, libvirt_call
from ansible_collections.virtops.libvirt.plugins.module_utils._lifecycle import ObjectManager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import escape_text, etree, parse, require_lxml


# virt_checkpoint_info's and virt_snapshot_info's options.
INFO_ARGS = dict(
    domain=dict(type='str', required=True),
    name=dict(type='str'),
)


def child_text(elem, path):
    """The stripped text of the element at path below elem, None when it is missing or empty."""
    node = elem.find(path)
    if node is None or node.text is None:
        return None
    return node.text.strip()


def new_moment(what, name, description):
    """A new <domain{what}> element (what: 'checkpoint', 'snapshot') with its <name> and, when
    given, its <description>."""
    require_lxml()
    root = etree.Element('domain' + what)
    etree.SubElement(root, 'name').text = name
    if description:
        etree.SubElement(root, 'description').text = description
    return root


def ordered_descendants(dom, moment, what, descendants_flag, every):
    """Names of every checkpoint or snapshot (what) below moment, parents before their
    children: listAllChildren(descendants_flag) has no topological order; every(dom), the
    domain-wide list, has."""
    with libvirt_call('listing the descendants of %s %s' % (what, moment.getName()), domain_label(dom)):
        below = moment.listAllChildren(flag(descendants_flag))
    names = set(m.getName() for m in below)
    return [m.getName() for m in every(dom) if m.getName() in names]


def diff_fields(desc, keys):
    """The fields (keys) of a checkpoint's or snapshot's description that diff mode shows;
    {} when there is none."""
    if not desc:
        return {}
    return dict((k, desc.get(k)) for k in keys)


def parse_moment(xml, what, error):
    """The root of a checkpoint's or snapshot's XML (what: 'checkpoint', 'snapshot'; the root
    element is <domain{what}>) and its creationTime (an int, None when absent); error on XML that
    is not one."""
    tag = 'domain' + what
    try:
        root = parse(xml, 'the %s XML' % what)
    except VirtError as exc:
        raise error(exc.msg)
    if root.tag != tag:
        raise error('the %s XML has root element <%s>; expected <%s>' % (what, root.tag, tag))
    creation = child_text(root, 'creationTime')
    if creation is not None:
        try:
            creation = int(creation)
        except ValueError:
            raise error('the %s XML has a creationTime that is not a number: %r' % (what, creation))
    return root, creation


def replace_description(xml, description, what, error):
    """The checkpoint or snapshot XML with its <description> replaced (removed when description
    is empty); what ('checkpoint', 'snapshot') names the document in error's messages.

    A text edit of the part before <creationTime>: the copy of the domain definition, which may
    use XML namespaces and has a <description> of its own, stays byte for byte as libvirt wrote it.
    """
    match = re.search(r'<creationTime[\s>]', xml)
    if match is None:
        raise error('the %s XML has no <creationTime>' % what)
    head, tail = xml[:match.start()], xml[match.start():]
    head = re.sub(r'[ \t]*<description(\s[^>]*)?(/>|>.*?</description>)[ \t]*\n?', '', head, count=1, flags=re.S)
    if description:
        name = re.search(r'</name>[ \t]*\n?', head)
        if name is None:
            raise error('the %s XML has no <name> before <creationTime>' % what)
        indent = re.search(r'\n([ \t]*)<name>', head)
        element = '%s<description>%s</description>\n' % (indent.group(1) if indent else '', escape_text(description))
        if not name.group(0).endswith('\n'):
            element = element.strip()
        head = head[:name.end()] + element + head[name.end():]
    return head + tail


class MomentManager(ObjectManager):
    """The lifecycle of a checkpoint or a snapshot of one domain (option domain), named by
    option name: state=absent deletes it (children: its descendants too; metadata_only: only
    libvirt's record of it). The result holds the object's facts under ``kind``, ``msg`` (what
    was done, or in check mode what would be) and, in diff mode, ``comparable`` facts before
    and after.

    A subclass sets kind, only and the object type's functions, and gives delete (the step of
    state=absent) and plan_present; deletion_note may add to the message.
    """

    # (state, options that apply only to it), in the order they are checked.
    only = ()
    # The object type's functions, as staticmethods: find(dom, name) -> the handle or None;
    # read(dom, handle) -> the facts the result returns; names_below(dom, handle) -> its
    # descendants, parents first; comparable(facts) -> the part diff mode shows ({} for none).
    find = read = names_below = comparable = None

    def __init__(self, connection, params, check_mode=False, diff_mode=False, warn=None):
        ObjectManager.__init__(self, connection, params, check_mode, diff_mode, warn)
        self.dom = None
        self.facts = None
        self.messages = None  # (check mode, real run)
        self.fields = {}

    # -- hooks of a subclass --------------------------------------------------------------------

    def delete(self, live):
        """The step of state=absent; returns None (the object is gone)."""
        raise NotImplementedError

    def deletion_note(self, live):
        """More words for the message of a deletion (how it is done), '' for none."""
        return ''

    # -- the lifecycle --------------------------------------------------------------------------

    def check_options(self):
        state = self.params['state']
        for owner, options in self.only:
            if owner == state:
                continue
            for option in options:
                if self.params[option] not in (None, False):
                    raise VirtError('%s applies only to state=%s' % (option, owner))

    def identify(self):
        self.dom = self.connection.get_domain(self.params['domain'])
        return self.params['name']

    def lookup(self):
        return self.find(self.dom, self.name)

    def describe(self, live):
        return self.read(self.dom, live)

    def planned(self, steps, facts, diff_before, diff_after, msg, would=None, **fields):
        """The Plan of steps (name, callable) and what the result reports: facts, the diff, the
        message of a real run (msg) and of check mode (would, else msg), more result fields."""
        plan = Plan()
        for name, run in steps:
            plan.add(name, run)
        plan.diff = dict(before=diff_before, after=diff_after)
        self.facts = facts
        self.messages = (would or msg, msg)
        self.fields = fields
        return plan

    def plan_absent(self, live):
        kind, name, p = self.kind, self.name, self.params
        if live is None:
            return self.planned([], None, {}, {}, '%s %s does not exist' % (kind, name), deleted=[])
        before = self.describe(live)
        deleted = [name] + (self.names_below(self.dom, live) if p['children'] else [])
        note = self.deletion_note(live)
        diff_before = self.comparable(before)
        if p['children']:
            diff_before['descendants'] = deleted[1:]
        what = '%s%s %s' % ('metadata of ' if p['metadata_only'] else '',
                            kind + 's' if len(deleted) > 1 else kind, ', '.join(deleted))
        return self.planned([('delete', self.delete)], before, diff_before, {},
                            '%s deleted%s' % (what, note),
                            would='%s would be deleted%s' % (what, note.replace('removed', 'would be removed')),
                            deleted=deleted)

    def after_apply(self, live, plan):
        """The facts of the object as the steps left it (a deleted one keeps its last facts)."""
        if not self.wants_absent():
            self.facts = self.describe(live)
            plan.diff = dict(before=plan.diff['before'], after=self.comparable(self.facts))
        return live

    def result_fields(self, live, plan):
        result = {self.kind: self.facts, 'msg': self.messages[0 if self.check_mode else 1]}
        result.update(self.fields)
        return result
