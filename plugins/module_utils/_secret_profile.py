# -*- coding: utf-8 -*-
# Copyright: contributors to virtops.libvirt
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private to the virtops.libvirt collection: may change without notice.
"""The SECRET profile: how a secret's XML is compared (xml/_compare.py). The value of a secret
is not in its XML; _secret.py compares it apart."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.virtops.libvirt.plugins.module_utils.xml._document import text_of
from ansible_collections.virtops.libvirt.plugins.module_utils.xml._profile import Profile


def _blank(elem):
    """A description of blanks only: libvirt keeps it as written, and the secret's facts read
    it as no description, so it is neither a description nor a change."""
    return text_of(elem) is None


# The desired XML says everything the secret's definition holds (_secret.SecretManager fills in
# what the options leave out from the live secret), so a description it lacks is a removal.
SECRET = Profile(
    'secret', 'secret',
    owned=('description',),
    ignored=[('description', _blank)],
    defaults={
        # virSecretDefFormat writes both always; the defaults only guard an older writer.
        '@ephemeral': 'no',
        '@private': 'no',
    },
)
