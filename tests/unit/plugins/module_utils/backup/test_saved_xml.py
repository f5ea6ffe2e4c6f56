# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The domain XML saved in a backup is untrusted: what reaches the host is refused, listeners move to
loopback, and the rest becomes a new domain that libvirt defines."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

import pytest

from lxml import etree

from ansible_collections.virtops.libvirt.plugins.module_utils._libvirt import VirtError
from ansible_collections.virtops.libvirt.plugins.module_utils.backup._saved_xml import new_domain_xml

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'

# What virt-install (libvirt 9.0) saves for a q35 UEFI guest with SPICE open to the network.
PLAIN = """<domain type='kvm'>
  <name>web01</name>
  <uuid>0b5ad3b8-3c55-4f0f-8a0c-2a4c5a0f4b11</uuid>
  <genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90d</genid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <firmware>
      <feature enabled='yes' name='enrolled-keys'/>
      <feature enabled='yes' name='secure-boot'/>
    </firmware>
    <loader secure='yes'/>
    <nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
    <smm state='on'/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
    <suspend-to-disk enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci' ports='15'>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </controller>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='1' port='0x10'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>
    </controller>
    <controller type='pci' index='2' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='2' port='0x11'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x1'/>
    </controller>
    <controller type='sata' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>
    </controller>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='2'/>
    </channel>
    <input type='tablet' bus='usb'>
      <address type='usb' bus='0' port='1'/>
    </input>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <tpm model='tpm-crb'>
      <backend type='emulator' version='2.0'/>
    </tpm>
    <graphics type='spice' autoport='yes' listen='0.0.0.0'>
      <listen type='address' address='0.0.0.0'/>
      <image compression='off'/>
    </graphics>
    <sound model='ich9'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1b' function='0x0'/>
    </sound>
    <audio id='1' type='spice'/>
    <video>
      <model type='qxl' ram='65536' vram='65536' vgamem='16384' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </video>
    <redirdev bus='usb' type='spicevmc'>
      <address type='usb' bus='0' port='2'/>
    </redirdev>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </rng>
  </devices>
</domain>
"""

DISKS = {'vda': '/srv/restore/web01/vda.qcow2'}

# A small domain to put one construct into: {ns} on the root, {os} in <os>, {top} at the top
# level, {devices} in <devices>.
BASE = """<domain type='kvm' {ns}>
  <name>orig</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    {os}
  </os>
  {top}
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/orig.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    {devices}
  </devices>
</domain>
"""


def domain(devices='', os='', top='', ns='', dtype=None):
    xml = BASE.format(devices=devices, os=os, top=top, ns=ns)
    if dtype:
        xml = xml.replace("type='kvm'", "type='%s'" % dtype, 1)
    return xml


def rewrite(xml, trust=False, disks=None, fmt='qcow2'):
    text, warnings = new_domain_xml(xml, 'restored', DISKS if disks is None else disks, fmt, trust=trust)
    return etree.fromstring(text.encode('utf-8')), warnings


def refusal(xml):
    with pytest.raises(VirtError) as err:
        new_domain_xml(xml, 'restored', DISKS, 'qcow2')
    msg = str(err.value)
    assert 'trust_saved_xml: true' in msg
    assert 'nobody else can write' in msg
    return msg


# ---------------------------------------------------------------------------------------------
# The realistic domain

def test_plain_domain_is_accepted_with_spice_moved_to_loopback():
    root, warnings = rewrite(PLAIN)
    graphics = root.find('./devices/graphics')
    assert graphics.get('listen') == '127.0.0.1'
    assert [l.get('address') for l in graphics.findall('listen')] == ['127.0.0.1']
    assert len(warnings) == 1
    assert 'graphics spice' in warnings[0] and '0.0.0.0' in warnings[0] and '127.0.0.1' in warnings[0]


def test_plain_domain_is_rewritten_as_a_new_domain():
    root, _warnings = rewrite(PLAIN)
    assert root.findtext('name') == 'restored'
    assert root.find('uuid') is None
    assert root.find('genid') is not None and not root.findtext('genid')     # libvirt makes a new one
    assert root.find('./devices/interface/mac') is None
    nvram = root.find('./os/nvram')
    assert not nvram.text and not nvram.attrib
    disk = root.find('./devices/disk[@device="disk"]')
    assert disk.get('type') == 'file'
    assert disk.find('source').get('file') == DISKS['vda']
    assert disk.find('driver').get('type') == 'qcow2'
    # Kept as they were: the empty CD-ROM, the TPM, the pty serial, the guest agent channel, metadata.
    cdrom = root.find('./devices/disk[@device="cdrom"]')
    assert cdrom.find('source') is None and cdrom.find('readonly') is not None
    assert root.find('./devices/tpm/backend').get('type') == 'emulator'
    assert root.find('./devices/serial').get('type') == 'pty'
    assert root.find('./devices/channel/target').get('name') == 'org.qemu.guest_agent.0'
    assert root.find('./os').get('firmware') == 'efi'
    assert root.find('./metadata') is not None


def test_plain_domain_defines_on_the_test_driver(conn):
    text, _warnings = new_domain_xml(PLAIN, 'it-saved-xml-%s' % uuid.uuid4().hex[:8], DISKS, 'qcow2')
    dom = conn.conn.defineXML(text)
    try:
        defined = etree.fromstring(dom.XMLDesc(0).encode('utf-8'))
        assert defined.findtext('uuid') != '0b5ad3b8-3c55-4f0f-8a0c-2a4c5a0f4b11'
        assert defined.find('./devices/disk/source').get('file') == DISKS['vda']
        assert defined.find('./devices/interface/mac').get('address') != '52:54:00:6b:3c:58'
    finally:
        dom.undefine()


def test_explicit_ovmf_paths_under_usr_share_are_allowed(conn):
    xml = domain(os="<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"
                    "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/orig_VARS.fd"
                    "</nvram>")
    root, warnings = rewrite(xml)
    assert root.findtext('./os/loader') == '/usr/share/OVMF/OVMF_CODE_4M.fd'
    nvram = root.find('./os/nvram')
    assert nvram.get('template') == '/usr/share/OVMF/OVMF_VARS_4M.fd' and not nvram.text
    assert warnings == []
    text, _warnings = new_domain_xml(xml, 'it-saved-xml-%s' % uuid.uuid4().hex[:8], DISKS, 'qcow2')
    conn.conn.defineXML(text).undefine()


# What libvirt writes for a running transient domain: runtime ids, labels and paths it generated.
LIVE_DEVICES = """
    <serial type='pty'>
      <source path='/dev/pts/3'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
    </serial>
    <console type='pty' tty='/dev/pts/3'>
      <source path='/dev/pts/3'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-7-orig/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
"""
LIVE_TOP = """
  <seclabel type='dynamic' model='apparmor' relabel='yes'>
    <label>libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f</label>
    <imagelabel>libvirt-6695eb01-f6a4-8304-79aa-97f2502e193f</imagelabel>
  </seclabel>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+994</label>
    <imagelabel>+64055:+994</imagelabel>
  </seclabel>
  <resource><partition>/machine</partition></resource>
"""


def test_live_xml_of_a_running_domain_is_accepted(conn):
    xml = domain(devices=LIVE_DEVICES, top=LIVE_TOP).replace("<domain type='kvm' ", "<domain type='kvm' id='7' ")
    root, warnings = rewrite(xml)
    assert warnings == []
    assert root.get('id') is None
    assert root.find('./devices/console').get('tty') is None
    assert root.find('./devices/serial/source') is None
    assert root.find('./devices/channel/source').get('path') is None
    assert root.find('./devices/channel/source').get('mode') == 'bind'
    assert root.find('./seclabel/label') is None and root.find('./seclabel/imagelabel') is None
    text, _warnings = new_domain_xml(xml, 'it-saved-xml-%s' % uuid.uuid4().hex[:8], DISKS, 'qcow2')
    conn.conn.defineXML(text).undefine()


# ---------------------------------------------------------------------------------------------
# Refused constructs: each named in the error

QEMU = "xmlns:qemu='%s'" % QEMU_NS

REFUSED = [
    # hypervisor passthrough
    ('qemu:commandline', dict(ns=QEMU, top="<qemu:commandline><qemu:arg value='-chardev'/>"
                                           "<qemu:arg value='file,id=x,path=/etc/shadow'/></qemu:commandline>")),
    ('qemu:capabilities', dict(ns=QEMU, top="<qemu:capabilities><qemu:add capability='blockdev'/>"
                                            "</qemu:capabilities>")),
    ('qemu:override', dict(ns=QEMU, top="<qemu:override><qemu:device alias='ua-disk'><qemu:frontend>"
                                        "<qemu:property name='x' type='string' value='y'/></qemu:frontend>"
                                        "</qemu:device></qemu:override>")),
    ('qemu:deprecation', dict(ns=QEMU, top="<qemu:deprecation behavior='crash'/>")),
    ('lxc:namespace', dict(ns="xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'",
                           top="<lxc:namespace><lxc:sharenet type='netns' value='host'/></lxc:namespace>")),
    ('xen:commandline', dict(ns="xmlns:xen='http://libvirt.org/schemas/domain/xen/1.0'",
                             top="<xen:commandline><xen:arg value='-x'/></xen:commandline>")),
    ('bhyve:commandline', dict(ns="xmlns:bhyve='http://libvirt.org/schemas/domain/bhyve/1.0'",
                               top="<bhyve:commandline><bhyve:arg value='-x'/></bhyve:commandline>")),
    ('evil:disk', dict(ns="xmlns:evil='http://example.com/x'",
                       devices="<evil:disk type='file' device='disk'><source file='/etc/shadow'/>"
                               "<target dev='vdz'/></evil:disk>")),
    ('evil:file', dict(ns="xmlns:evil='http://example.com/x'",
                       devices="<channel type='spicevmc' evil:file='/etc/shadow'><target type='virtio'/></channel>")),
    ("domain type 'lxc'", dict(dtype='lxc')),
    # host devices
    ("<hostdev mode='subsystem' type='pci' managed='yes'>",
     dict(devices="<hostdev mode='subsystem' type='pci' managed='yes'><source>"
                  "<address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source></hostdev>")),
    ("<hostdev mode='subsystem' type='usb'>",
     dict(devices="<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/>"
                  "</source></hostdev>")),
    ("<interface type='hostdev'", dict(devices="<interface type='hostdev'><source><address type='pci' "
                                               "domain='0' bus='4' slot='0' function='1'/></source></interface>")),
    ("<redirdev bus='usb' type='unix'>", dict(devices="<redirdev bus='usb' type='unix'>"
                                                      "<source mode='connect' path='/run/usbredir.sock'/></redirdev>")),
    ("<smartcard mode='host'>", dict(devices="<smartcard mode='host'/>")),
    ("<smartcard mode='host-certificates'>",
     dict(devices="<smartcard mode='host-certificates'><certificate>c1</certificate><certificate>c2</certificate>"
                  "<certificate>c3</certificate><database>/etc/pki/nssdb/</database></smartcard>")),
    ("<smartcard mode='passthrough' type='tcp'>",
     dict(devices="<smartcard mode='passthrough' type='tcp'><source mode='connect' host='192.0.2.1' "
                  "service='2001'/><protocol type='raw'/></smartcard>")),
    ("<shmem name='shared'>", dict(devices="<shmem name='shared'><model type='ivshmem-plain'/>"
                                           "<size unit='M'>4</size></shmem>")),
    ("<lease>", dict(devices="<lease><lockspace>s</lockspace><key>k</key><target path='/etc/shadow'/></lease>")),
    # host directories and files
    ("<filesystem type='mount' accessmode='passthrough'>",
     dict(devices="<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/>"
                  "<source dir='/'/><target dir='host'/></filesystem>")),
    ("<filesystem accessmode='mapped'>", dict(devices="<filesystem accessmode='mapped'><source dir='/root'/>"
                                                      "<target dir='r'/></filesystem>")),
    ("<filesystem type='file'>", dict(devices="<filesystem type='file'><source file='/etc/shadow'/>"
                                              "<target dir='/'/></filesystem>")),
    ("<filesystem type='block'>", dict(devices="<filesystem type='block'><source dev='/dev/sda'/>"
                                               "<target dir='/'/></filesystem>")),
    ("<memory model='nvdimm'>", dict(devices="<memory model='nvdimm'><source><path>/etc/shadow</path></source>"
                                             "<target><size unit='KiB'>524288</size><node>0</node></target>"
                                             "</memory>")),
    ("<pstore backend='acpi-erst'>", dict(devices="<pstore backend='acpi-erst'><path>/etc/shadow</path>"
                                                  "<size unit='KiB'>8</size></pstore>")),
    ('<rom file=\'/etc/shadow\'>', dict(devices="<interface type='network'><source network='default'/>"
                                                "<rom file='/etc/shadow'/></interface>")),
    ("<entry name='opt/com.example/secret' file='/etc/shadow'>",
     dict(top="<sysinfo type='fwcfg'><entry name='opt/com.example/secret' file='/etc/shadow'/></sysinfo>")),
    # the kernel, firmware and programs QEMU or libvirt run
    ('<kernel>', dict(os="<kernel>/boot/vmlinuz</kernel>")),
    ('<initrd>', dict(os="<initrd>/etc/shadow</initrd>")),
    ('<dtb>', dict(os="<dtb>/etc/shadow</dtb>")),
    ("<table type='slic'>", dict(os="<acpi><table type='slic'>/etc/shadow</table></acpi>")),
    ("<loader readonly='yes' type='pflash'>", dict(os="<loader readonly='yes' type='pflash'>/etc/shadow</loader>")),
    ("<loader readonly='yes' type='pflash'>",
     dict(os="<loader readonly='yes' type='pflash'>/usr/share/../../etc/shadow</loader>")),
    ("<loader readonly='no' type='pflash'>",
     dict(os="<loader readonly='no' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>")),
    ("<nvram template='/etc/shadow'>", dict(os="<nvram template='/etc/shadow'/>")),
    ("<smbios mode='host'>", dict(os="<smbios mode='host'/>")),
    ('<bootloader>', dict(top="<bootloader>/usr/bin/pygrub</bootloader>")),
    ('<emulator>', dict(devices="<emulator>/tmp/qemu-system-x86_64</emulator>")),
    ("<script path='/etc/qemu-ifup'>", dict(devices="<interface type='ethernet'><script path='/etc/qemu-ifup'/>"
                                                    "</interface>")),
    ("<downscript path='/tmp/x'>", dict(devices="<interface type='bridge'><source bridge='br0'/>"
                                                "<downscript path='/tmp/x'/></interface>")),
    ("<script path='/tmp/x'>", dict(devices="<interface type='bridge'><source bridge='br0'/>"
                                            "<script path='/tmp/x'/></interface>")),
    # network interfaces that take host devices or sockets
    ("<interface type='direct'>", dict(devices="<interface type='direct'><source dev='eth0' mode='passthrough'/>"
                                               "</interface>")),
    ("<interface type='vdpa'>", dict(devices="<interface type='vdpa'><source dev='/dev/vhost-vdpa-0'/>"
                                             "</interface>")),
    ("<interface type='vhostuser'>", dict(devices="<interface type='vhostuser'><source type='unix' "
                                                  "path='/run/openvswitch/vhu0' mode='client'/>"
                                                  "<model type='virtio'/></interface>")),
    ("<target dev='vnet9' managed='no'>", dict(devices="<interface type='ethernet'>"
                                                       "<target dev='vnet9' managed='no'/></interface>")),
    ("<route family='ipv4'", dict(devices="<interface type='ethernet'><route family='ipv4' address='0.0.0.0' "
                                          "prefix='0' gateway='192.0.2.1'/></interface>")),
    ("<backend tap='/dev/tap3'>", dict(devices="<interface type='network'><source network='default'/>"
                                               "<backend tap='/dev/tap3'/></interface>")),
    ("<backend type='passt' logFile='/etc/cron.d/x'>",
     dict(devices="<interface type='user'><backend type='passt' logFile='/etc/cron.d/x'/></interface>")),
    # security labels
    ("<seclabel type='none'>", dict(top="<seclabel type='none'/>")),
    ("<seclabel type='static' model='selinux' relabel='no'>",
     dict(top="<seclabel type='static' model='selinux' relabel='no'><label>system_u:system_r:unconfined_t:s0"
              "</label></seclabel>")),
    ("<seclabel type='static' model='dac'>", dict(top="<seclabel type='static' model='dac'><label>+0:+0</label>"
                                                      "</seclabel>")),
    ("<seclabel type='dynamic' model='selinux' relabel='no'>",
     dict(top="<seclabel type='dynamic' model='selinux' relabel='no'/>")),
    ("<seclabel model='none'>", dict(top="<seclabel model='none'/>")),
    ("<seclabel type='dynamic' model='selinux'>",
     dict(top="<seclabel type='dynamic' model='selinux'><baselabel>system_u:system_r:unconfined_t:s0</baselabel>"
              "</seclabel>")),
    ("<seclabel model='selinux' relabel='no'>",
     dict(devices="<serial type='pty'><source><seclabel model='selinux' relabel='no'/></source>"
                  "<target port='0'/></serial>")),
    # character devices on host files, devices, pipes and sockets
    ("<serial type='file'>", dict(devices="<serial type='file'><source path='/etc/cron.d/x'/><target port='0'/>"
                                          "</serial>")),
    ("<serial type='dev'>", dict(devices="<serial type='dev'><source path='/dev/ttyS0'/><target port='0'/>"
                                         "</serial>")),
    ("<serial type='pipe'>", dict(devices="<serial type='pipe'><source path='/tmp/p'/><target port='0'/>"
                                          "</serial>")),
    ("<serial type='unix'>", dict(devices="<serial type='unix'><source mode='bind' path='/run/x.sock'/>"
                                          "<target port='0'/></serial>")),
    ("<console type='dev'>", dict(devices="<console type='dev'><source path='/dev/tty1'/>"
                                          "<target type='serial' port='0'/></console>")),
    ("<parallel type='file'>", dict(devices="<parallel type='file'><source path='/tmp/lp'/><target port='0'/>"
                                            "</parallel>")),
    ("<channel type='unix'>", dict(devices="<channel type='unix'><source mode='connect' path='/var/lib/libvirt/"
                                           "qemu/channel/target/domain-3-other/org.qemu.guest_agent.0'/>"
                                           "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")),
    ("<channel type='unix'>", dict(devices="<channel type='unix'><source mode='bind' path='/etc/x'/>"
                                           "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")),
    ("<serial type='tcp'>", dict(devices="<serial type='tcp'><source mode='connect' host='127.0.0.1' "
                                         "service='5900'/><target port='0'/></serial>")),
    ("<log file='/etc/cron.d/x'", dict(devices="<serial type='pty'><log file='/etc/cron.d/x' append='on'/>"
                                               "<target port='0'/></serial>")),
    ("<serial type='nmdm'>", dict(devices="<serial type='nmdm'><source master='/dev/nmdm0A' slave='/dev/nmdm0B'/>"
                                          "<target port='0'/></serial>")),
    ("<rng model='virtio'>", dict(devices="<rng model='virtio'><backend model='random'>/dev/sda</backend></rng>")),
    ("<backend model='egd' type='unix'>", dict(devices="<rng model='virtio'><backend model='egd' type='unix'>"
                                                       "<source mode='connect' path='/run/egd.sock'/></backend>"
                                                       "</rng>")),
    # TPM, input, sound, GPU
    ("<tpm model='tpm-tis'>", dict(devices="<tpm model='tpm-tis'><backend type='passthrough'>"
                                           "<device path='/dev/tpm0'/></backend></tpm>")),
    ("<tpm model='tpm-crb'>", dict(devices="<tpm model='tpm-crb'><backend type='external'>"
                                           "<source type='unix' mode='connect' path='/run/swtpm.sock'/></backend>"
                                           "</tpm>")),
    ("<input type='passthrough' bus='virtio'>", dict(devices="<input type='passthrough' bus='virtio'>"
                                                             "<source evdev='/dev/input/event1'/></input>")),
    ("<input type='evdev'>", dict(devices="<input type='evdev'><source dev='/dev/input/event2' grab='all'/>"
                                          "</input>")),
    ("<audio id='1' type='file' path='/etc/cron.d/x'>", dict(devices="<audio id='1' type='file' "
                                                                     "path='/etc/cron.d/x'/>")),
    ("<audio id='1' type='pulseaudio'", dict(devices="<audio id='1' type='pulseaudio' "
                                                     "serverName='unix:/run/user/1000/pulse/native'/>")),
    ("<audio id='1' type='alsa'>", dict(devices="<audio id='1' type='alsa'><input dev='hw:0'/></audio>")),
    ("<graphics type='sdl' display=':0' xauth='/root/.Xauthority'>",
     dict(devices="<graphics type='sdl' display=':0' xauth='/root/.Xauthority'/>")),
    ("<graphics type='egl-headless'>", dict(devices="<graphics type='egl-headless'/>")),
    ("<gl enable='yes' rendernode='/dev/dri/renderD128'>",
     dict(devices="<graphics type='spice'><listen type='none'/><gl enable='yes' rendernode='/dev/dri/renderD128'/>"
                  "</graphics>")),
    ("<graphics type='dbus' address='unix:path=/run/user/0/bus'>",
     dict(devices="<graphics type='dbus' address='unix:path=/run/user/0/bus'/>")),
    ("<acceleration accel3d='yes'>", dict(devices="<video><model type='virtio' heads='1' primary='yes'>"
                                                  "<acceleration accel3d='yes'/></model></video>")),
    ("<driver name='vhostuser'>", dict(devices="<video><driver name='vhostuser'/><model type='virtio'/></video>")),
    # a disk type that takes a host device, kept by a removable drive
    ("<disk type='nvme' device='cdrom'>", dict(devices="<disk type='nvme' device='cdrom'><target dev='sdc'/></disk>")),
    # the backstop: a host path in something no rule knows
    ("<futuredev path='/etc/shadow'>", dict(devices="<futuredev path='/etc/shadow'/>")),
    ('<vmstate>', dict(top="<vmstate>/var/lib/secret</vmstate>")),
]


@pytest.mark.parametrize('name, parts', REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_and_named(name, parts):
    msg = refusal(domain(**parts))
    assert name in msg


@pytest.mark.parametrize('name, parts', REFUSED, ids=[r[0] for r in REFUSED])
def test_trust_lets_it_through_with_a_warning(name, parts):
    root, warnings = rewrite(domain(**parts), trust=True)
    assert root.findtext('name') == 'restored'
    assert any('trust_saved_xml: true let through' in w and name in w for w in warnings)


def test_every_offending_element_is_listed_at_once():
    xml = domain(ns=QEMU, top="<qemu:commandline><qemu:arg value='-S'/></qemu:commandline>",
                 devices="<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='3' slot='0' "
                         "function='0'/></source></hostdev><serial type='file'><source path='/tmp/x'/>"
                         "<target port='0'/></serial>")
    with pytest.raises(VirtError) as err:
        new_domain_xml(xml, 'restored', DISKS, 'qcow2')
    msg = str(err.value)
    for name in ('qemu:commandline', '<hostdev', "<serial type='file'>"):
        assert name in msg
    assert len(err.value.details['refused']) == 3
    assert 'qemu:arg' not in msg          # listed once, with its container


def test_a_refused_domain_type_still_has_its_devices_checked():
    msg = refusal(domain(dtype='lxc', devices="<filesystem type='mount'><source dir='/'/><target dir='/'/>"
                                              "</filesystem>"))
    assert "domain type 'lxc'" in msg and '<filesystem' in msg


def test_trust_keeps_qemu_commandline():
    xml = domain(ns=QEMU, top="<qemu:commandline><qemu:arg value='-S'/></qemu:commandline>")
    text, warnings = new_domain_xml(xml, 'restored', DISKS, 'qcow2', trust=True)
    root = etree.fromstring(text.encode('utf-8'))
    args = root.findall('{%s}commandline/{%s}arg' % (QEMU_NS, QEMU_NS))
    assert [a.get('value') for a in args] == ['-S']
    assert len(warnings) == 1 and 'qemu:commandline' in warnings[0]


# ---------------------------------------------------------------------------------------------
# Allowed on purpose

ALLOWED = [
    dict(devices="<filesystem type='ram'><source usage='1024'/><target dir='/tmp'/></filesystem>"),
    dict(devices="<interface type='direct'><source dev='eth0' mode='bridge'/><model type='virtio'/></interface>"),
    dict(devices="<interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>"),
    dict(devices="<interface type='user'><backend type='passt'/><model type='virtio'/></interface>"),
    dict(devices="<interface type='ethernet'><target dev='tap-orig'/><model type='virtio'/></interface>"),
    dict(devices="<interface type='network'><source network='default'/><backend tap='/dev/net/tun' "
                 "vhost='/dev/vhost-net'/><rom file='/usr/share/qemu/pxe-virtio.rom'/></interface>"),
    dict(devices="<smartcard mode='passthrough' type='spicevmc'/>"),
    dict(devices="<rng model='virtio'><backend model='random'>/dev/hwrng</backend></rng>"),
    dict(devices="<rng model='virtio'><backend model='builtin'/></rng>"),
    dict(devices="<serial type='tcp'><source mode='connect' host='192.0.2.10' service='4555'/>"
                 "<target port='0'/></serial>"),
    dict(devices="<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/>"
                 "</channel>"),
    dict(devices="<channel type='qemu-vdagent'><target type='virtio' name='com.redhat.spice.0'/></channel>"),
    dict(devices="<emulator>/usr/libexec/qemu-kvm</emulator>"),
    dict(devices="<graphics type='vnc' port='-1' autoport='yes'/>"),
    dict(devices="<audio id='1' type='none'/>"),
    dict(devices="<video><model type='virtio' heads='1' primary='yes'><acceleration accel3d='no'/></model>"
                 "</video>"),
    dict(top="<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>"),
    dict(top="<seclabel type='dynamic' model='selinux' relabel='yes'/>"),
    dict(top="<blkiotune><weight>800</weight><device><path>/dev/sda</path><weight>1000</weight></device>"
             "</blkiotune>"),
    dict(top="<description>/home/me/notes: restored VM</description>"),
    dict(os="<loader type='rom'>/usr/share/seabios/bios-256k.bin</loader>"),
    dict(ns="xmlns:app='http://example.com/app'", top="<metadata><app:x path='/etc/shadow'>/etc</app:x></metadata>"),
]


@pytest.mark.parametrize('parts', ALLOWED)
def test_allowed(parts):
    root, _warnings = rewrite(domain(**parts))
    assert root.findtext('name') == 'restored'


# ---------------------------------------------------------------------------------------------
# Disks and removable media

def test_removable_media_are_refused():
    xml = domain(devices="""
        <disk type='file' device='cdrom'>
          <driver name='qemu' type='raw'/>
          <source file='/var/lib/libvirt/images/debian-12.iso'/>
          <target dev='sda' bus='sata'/><readonly/>
        </disk>
        <disk type='block' device='floppy'>
          <source dev='/dev/fd0'/>
          <target dev='fda' bus='fdc'/>
        </disk>
        <disk type='network' device='cdrom'>
          <source protocol='http' name='/images/x.iso'><host name='192.0.2.5' port='80'/></source>
          <target dev='sdb' bus='sata'/><readonly/>
        </disk>""")
    with pytest.raises(VirtError) as err:
        rewrite(xml)
    for medium in ('cdrom holds /var/lib/libvirt/images/debian-12.iso', 'floppy holds /dev/fd0', 'cdrom holds /images/x.iso'):
        assert medium in err.value.msg, err.value.msg
    assert 'trust_saved_xml' in err.value.msg


def test_trust_keeps_removable_media():
    xml = domain(devices="<disk type='file' device='cdrom'><source file='/var/lib/libvirt/images/d.iso'/>"
                         "<target dev='sda' bus='sata'/><readonly/></disk>")
    root, warnings = rewrite(xml, trust=True)
    assert root.find('./devices/disk/target[@dev="sda"]/../source').get('file') == '/var/lib/libvirt/images/d.iso'
    assert len(warnings) == 1 and 'd.iso' in warnings[0]


def test_disks_not_restored_are_left_out_with_a_warning():
    xml = domain(devices="<disk type='block' device='lun' rawio='yes' sgio='unfiltered'><source dev='/dev/sdb'/>"
                         "<target dev='sdb' bus='scsi'/></disk>")
    root, warnings = rewrite(xml)
    assert root.find('./devices/disk/target[@dev="sdb"]') is None
    assert warnings == ['disk sdb was not restored, so the new domain does not have it']


def test_restored_lun_becomes_a_plain_disk_on_the_image():
    xml = domain(devices="""
        <disk type='block' device='lun' rawio='yes' sgio='unfiltered'>
          <driver name='qemu' type='raw'/>
          <source dev='/dev/sdb'><seclabel model='dac' relabel='no'/></source>
          <backingStore/>
          <target dev='sdb' bus='scsi'/>
        </disk>""")
    root, warnings = rewrite(xml, disks={'vda': '/r/vda.raw', 'sdb': '/r/sdb.raw'}, fmt='raw')
    disk = root.find('./devices/disk/target[@dev="sdb"]/..')
    assert (disk.get('type'), disk.get('device'), disk.get('rawio'), disk.get('sgio')) == ('file', 'disk', None, None)
    assert [(s.get('file'), len(s)) for s in disk.findall('source')] == [('/r/sdb.raw', 0)]
    assert disk.find('backingStore') is None
    assert disk.find('driver').get('type') == 'raw'
    assert warnings == []


# ---------------------------------------------------------------------------------------------
# Listeners move to loopback, also with trust

@pytest.mark.parametrize('trust', [False, True])
def test_vnc_on_a_network_listen_moves_to_loopback(trust):
    xml = domain(devices="<graphics type='vnc' port='-1' autoport='yes' listen='192.168.122.1'>"
                         "<listen type='network' address='192.168.122.1' network='default'/></graphics>")
    root, warnings = rewrite(xml, trust=trust)
    graphics = root.find('./devices/graphics')
    listen = graphics.find('listen')
    assert graphics.get('listen') == '127.0.0.1'
    assert (listen.get('type'), listen.get('address'), listen.get('network')) == ('address', '127.0.0.1', None)
    assert len(warnings) == 1 and 'graphics vnc' in warnings[0] and 'network default' in warnings[0]


def test_ipv6_any_moves_and_loopback_stays():
    root, warnings = rewrite(domain(devices="<graphics type='vnc' port='-1'><listen type='address' address='::'/>"
                                            "</graphics><graphics type='spice' listen='::1'/>"))
    vnc, spice = root.findall('./devices/graphics')
    assert vnc.find('listen').get('address') == '127.0.0.1'
    assert spice.get('listen') == '::1'
    assert len(warnings) == 1 and 'graphics vnc' in warnings[0]


def test_graphics_socket_path_is_dropped():
    xml = domain(devices="<graphics type='vnc'><listen type='socket' socket='/etc/x.sock'/></graphics>")
    root, warnings = rewrite(xml)
    assert root.find('./devices/graphics/listen').get('socket') is None
    assert len(warnings) == 1 and '/etc/x.sock' in warnings[0]


@pytest.mark.parametrize('trust', [False, True])
def test_tcp_and_udp_chardevs_that_listen_move_to_loopback(trust):
    xml = domain(devices="""
        <serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/><protocol type='telnet'/>
          <target port='0'/></serial>
        <serial type='tcp'><source mode='bind' service='4556'/><target port='1'/></serial>
        <channel type='udp'><source mode='bind' host='192.0.2.3' service='4557'/>
          <source mode='connect' host='192.0.2.4' service='4558'/><target type='virtio' name='x.y'/></channel>""")
    root, warnings = rewrite(xml, trust=trust)
    binds = root.findall('./devices/*/source[@mode="bind"]')
    assert [s.get('host') for s in binds] == ['127.0.0.1'] * 3
    assert root.find('./devices/channel/source[@mode="connect"]').get('host') == '192.0.2.4'
    assert [w.split(' listened')[0] for w in warnings] == ['serial 0 (tcp)', 'serial 1 (tcp)', 'channel x.y (udp)']


# ---------------------------------------------------------------------------------------------
# Broken input

@pytest.mark.parametrize('text', ['', '<domain><name>x</name>', 'not xml at all'])
def test_broken_xml_names_the_file(text):
    with pytest.raises(VirtError) as err:
        new_domain_xml(text, 'restored', DISKS, 'qcow2')
    assert 'domain.xml of backup' in str(err.value)


@pytest.mark.parametrize('text', [
    '<!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/shadow">]><domain><name>&x;</name></domain>',
    '<!DOCTYPE domain [<!ENTITY k "/etc/shadow">]><domain type="kvm"><name>x</name><os><kernel>&k;</kernel>'
    '</os></domain>',
])
def test_entities_are_refused(text):
    with pytest.raises(VirtError) as err:
        new_domain_xml(text, 'restored', DISKS, 'qcow2', trust=True)
    assert 'domain.xml of backup' in str(err.value) and 'entities' in str(err.value)


def test_root_must_be_domain():
    with pytest.raises(VirtError) as err:
        new_domain_xml('<network><name>x</name></network>', 'restored', DISKS, 'qcow2')
    assert '<network>' in str(err.value)


def test_missing_name_is_added():
    root, _warnings = rewrite("<domain type='kvm'><memory>1</memory><os><type>hvm</type></os></domain>")
    assert root.findtext('name') == 'restored'
