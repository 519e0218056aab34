# A bank's gateway on Python's smpplib using every message operation of SMPP 3.4 against an
# operator node: submit_multi, data_sm, query_sm, cancel_sm and replace_sm. smpplib encodes
# and decodes data_sm and query_sm itself; submit_multi, cancel_sm and replace_sm (which it
# lacks) are declared here with its own Command machinery, field by field as SMPP 3.4 lays
# them out (§4.5, §4.9, §4.10). Prints one line per answer for the Rust test to check.
#
# argv: host port system_id password local_number other_operators_number other_esmes_message_id
# [ca.pem]
# With other_esmes_message_id "-", only the submit_multi (a cluster's end-to-end test).
import ssl
import struct
import sys

import smpplib.client
import smpplib.consts as consts
from smpplib import command, exceptions
from smpplib.command import Command, Param
from smpplib.ptypes import ostr


class SubmitMulti(Command):
    params = {
        'service_type': Param(type=str, max=6),
        'source_addr_ton': Param(type=int, size=1),
        'source_addr_npi': Param(type=int, size=1),
        'source_addr': Param(type=str, max=21),
        'number_of_dests': Param(type=int, size=1),
        # dest_address(es): a composite list smpplib has no type for, laid out by dests().
        'dest_address': Param(type=ostr, max=255 * 24),
        'esm_class': Param(type=int, size=1),
        'protocol_id': Param(type=int, size=1),
        'priority_flag': Param(type=int, size=1),
        'schedule_delivery_time': Param(type=str, max=17),
        'validity_period': Param(type=str, max=17),
        'registered_delivery': Param(type=int, size=1),
        'replace_if_present_flag': Param(type=int, size=1),
        'data_coding': Param(type=int, size=1),
        'sm_default_msg_id': Param(type=int, size=1),
        'sm_length': Param(type=int, size=1),
        'short_message': Param(type=ostr, max=254, len_field='sm_length'),
    }
    params_order = tuple(params)

    def __init__(self, command, **kwargs):
        super().__init__(command, **kwargs)
        self._set_vars(**(dict.fromkeys(self.params)))
        self.sm_length = len(self.short_message or b'')


def dests(numbers, lists):
    """dest_address list: dest_flag 1 (SME: TON, NPI, address) or 2 (distribution list)."""
    out = b''
    for n in numbers:
        out += bytes([1, consts.SMPP_TON_INTL, consts.SMPP_NPI_ISDN]) + n.encode() + b'\0'
    for name in lists:
        out += bytes([2]) + name.encode() + b'\0'
    return out


class SubmitMultiResp(Command):
    params = {'message_id': Param(type=str, max=65)}
    params_order = ('message_id',)

    def __init__(self, command, **kwargs):
        super().__init__(command, need_sequence=False, **kwargs)
        self.unsuccess = []

    def parse_params(self, data):
        end = data.index(b'\0')
        self.message_id = data[:end]
        pos = end + 1
        count = data[pos]
        pos += 1
        for _ in range(count):
            pos += 2  # dest_addr_ton, dest_addr_npi
            end = data.index(b'\0', pos)
            address = data[pos:end].decode()
            (status,) = struct.unpack('>I', data[end + 1:end + 5])
            self.unsuccess.append((address, status))
            pos = end + 5


class CancelSM(Command):
    params = {
        'service_type': Param(type=str, max=6),
        'message_id': Param(type=str, max=65),
        'source_addr_ton': Param(type=int, size=1),
        'source_addr_npi': Param(type=int, size=1),
        'source_addr': Param(type=str, max=21),
        'dest_addr_ton': Param(type=int, size=1),
        'dest_addr_npi': Param(type=int, size=1),
        'destination_addr': Param(type=str, max=21),
    }
    params_order = tuple(params)

    def __init__(self, command, **kwargs):
        super().__init__(command, **kwargs)
        self._set_vars(**(dict.fromkeys(self.params)))


class ReplaceSM(Command):
    params = {
        'message_id': Param(type=str, max=65),
        'source_addr_ton': Param(type=int, size=1),
        'source_addr_npi': Param(type=int, size=1),
        'source_addr': Param(type=str, max=21),
        'schedule_delivery_time': Param(type=str, max=17),
        'validity_period': Param(type=str, max=17),
        'registered_delivery': Param(type=int, size=1),
        'sm_default_msg_id': Param(type=int, size=1),
        'sm_length': Param(type=int, size=1),
        'short_message': Param(type=ostr, max=254, len_field='sm_length'),
    }
    params_order = tuple(params)

    def __init__(self, command, **kwargs):
        super().__init__(command, **kwargs)
        self._set_vars(**(dict.fromkeys(self.params)))
        self.sm_length = len(self.short_message or b'')


class EmptyResp(Command):
    params = {}
    params_order = ()

    def __init__(self, command, **kwargs):
        super().__init__(command, need_sequence=False, **kwargs)


EXTRA = {
    'submit_multi': SubmitMulti,
    'submit_multi_resp': SubmitMultiResp,
    'cancel_sm': CancelSM,
    'cancel_sm_resp': EmptyResp,
    'replace_sm': ReplaceSM,
    'replace_sm_resp': EmptyResp,
}
smpplib_factory = command.factory
command.factory = lambda name, **kw: EXTRA[name](name, **kw) if name in EXTRA else smpplib_factory(name, **kw)
BOUND = (consts.SMPP_CLIENT_STATE_BOUND_TX, consts.SMPP_CLIENT_STATE_BOUND_TRX)
for name in EXTRA:
    consts.COMMAND_STATES[name] = BOUND
# smpplib allows query_sm on receivers only and replace_sm on transmitters only; SMPP 3.4
# (§2.3) allows both on transmitters and transceivers.
consts.COMMAND_STATES['query_sm'] = BOUND
consts.COMMAND_STATES['query_sm_resp'] = BOUND

host, port, system_id, password, local, remote, others_id = sys.argv[1:8]
context = None
if len(sys.argv) > 8:
    context = ssl.create_default_context(cafile=sys.argv[8])
    # smpplib wraps the socket without a server name: the chain is checked, not the name.
    context.check_hostname = False
c = smpplib.client.Client(host, int(port), timeout=5, ssl_context=context)
c.connect()
bound = c.bind_transceiver(system_id=system_id, password=password)
print("BIND", bound.sc_interface_version, flush=True)


def call(name, **fields):
    """Sends one request and returns (status, response); receipts arriving meanwhile are
    acknowledged."""
    p = smpplib.smpp.make_pdu(name, client=c, **fields)
    c.send_pdu(p)
    while True:
        try:
            r = c.read_pdu()
        except exceptions.PDUError as e:
            return e.args[1], None
        if r.command == 'deliver_sm':
            c.send_pdu(smpplib.smpp.make_pdu('deliver_sm_resp', client=c, sequence=r.sequence))
            continue
        if r.sequence == p.sequence:
            return r.status, r


SOURCE = dict(source_addr_ton=consts.SMPP_TON_ALNUM, source_addr_npi=0, source_addr="MyBank")
# GSM 03.38, one septet an octet, the extension table after 0x1B: "@£$_{}[]~€ éüÑÅ".
GSM = b"\x00\x01\x02\x11\x1b\x28\x1b\x29\x1b\x3c\x1b\x3e\x1b\x3d\x1b\x65 \x05\x7e\x5d\x0e"

status, r = call('submit_multi', **SOURCE, number_of_dests=4,
                 dest_address=dests([local, remote, "4799000000x"], ["staff"]),
                 registered_delivery=0, data_coding=0, short_message=GSM)
multi_id = r.message_id.decode()
print("MULTI", status, multi_id, " ".join(f"{a}={s}" for a, s in r.unsuccess), flush=True)
if others_id == "-":
    c.unbind()
    c.disconnect()
    print("DONE", flush=True)
    sys.exit(0)

status, r = call('data_sm', **SOURCE, dest_addr_ton=consts.SMPP_TON_INTL, dest_addr_npi=consts.SMPP_NPI_ISDN,
                 destination_addr=local, esm_class=0, registered_delivery=0, data_coding=0,
                 message_payload=b"Sent with data_sm")
data_id = r.message_id.decode()
print("DATA", status, data_id, flush=True)

status, r = call('query_sm', message_id=multi_id, **SOURCE)
print("QUERY", status, r.message_state, repr(r.final_date.decode()), flush=True)

status, _ = call('query_sm', message_id=others_id, **SOURCE)
print("QUERY_OTHER", status, flush=True)
status, _ = call('query_sm', message_id="not-an-id", **SOURCE)
print("QUERY_BAD", status, flush=True)

status, _ = call('replace_sm', message_id=data_id, **SOURCE, registered_delivery=0,
                 short_message=b"Replaced: " + GSM)
print("REPLACE", status, flush=True)

status, r = call('submit_sm', **SOURCE, dest_addr_ton=consts.SMPP_TON_INTL, dest_addr_npi=consts.SMPP_NPI_ISDN,
                 destination_addr=local, short_message=b"Cancel me", registered_delivery=1)
cancel_id = r.message_id.decode()
status, _ = call('cancel_sm', **SOURCE, message_id=cancel_id, dest_addr_ton=consts.SMPP_TON_INTL,
                 dest_addr_npi=consts.SMPP_NPI_ISDN, destination_addr=local)
print("CANCEL", status, cancel_id, flush=True)
status, r = call('query_sm', message_id=cancel_id, **SOURCE)
print("QUERY_CANCELLED", status, r.message_state, len(r.final_date.decode()), flush=True)
status, _ = call('cancel_sm', **SOURCE, message_id=cancel_id, destination_addr="")
print("CANCEL_AGAIN", status, flush=True)
status, _ = call('replace_sm', message_id=cancel_id, **SOURCE, short_message=b"Too late")
print("REPLACE_CANCELLED", status, flush=True)
status, _ = call('cancel_sm', **SOURCE, message_id=others_id, destination_addr="")
print("CANCEL_OTHER", status, flush=True)

# Without a message_id: every queued message from this source to that destination (a number
# of the local operator's range that nothing else here is sent to).
BULK_TO = "4790000099"
bulk = []
for text in (b"Bulk 1", b"Bulk 2"):
    status, r = call('submit_sm', **SOURCE, dest_addr_ton=consts.SMPP_TON_INTL,
                     dest_addr_npi=consts.SMPP_NPI_ISDN, destination_addr=BULK_TO, short_message=text)
    bulk.append(r.message_id.decode())
status, _ = call('cancel_sm', **SOURCE, message_id="", dest_addr_ton=consts.SMPP_TON_INTL,
                 dest_addr_npi=consts.SMPP_NPI_ISDN, destination_addr=BULK_TO)
states = [call('query_sm', message_id=i, **SOURCE)[1].message_state for i in bulk]
print("CANCEL_ALL", status, *states, flush=True)
status, _ = call('cancel_sm', **SOURCE, message_id="", dest_addr_ton=consts.SMPP_TON_INTL,
                 dest_addr_npi=consts.SMPP_NPI_ISDN, destination_addr=BULK_TO)
print("CANCEL_NONE", status, flush=True)

c.unbind()
c.disconnect()
print("DONE", flush=True)
