"""A Gy client written with python-diameter (PyPI), an implementation independent of numport's:
its Node does the capabilities exchange, the watchdog and the disconnect, and this script sends
one credit-control session (CCR-Initial, -Update, -Termination) through it.

    python3 gy_client.py <port> <idle seconds>

Prints one JSON line per CCA on stdout; python-diameter's own log (CER/CEA, DWR/DWA, DPR/DPA)
goes to stderr.
"""
import json
import logging
import sys
import time

from diameter.message.constants import *
from diameter.message.commands import CreditControlRequest
from diameter.message.avp.grouped import (
    MultipleServicesCreditControl, RequestedServiceUnit, SubscriptionId, UsedServiceUnit)
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

# python-diameter counts idle time in whole seconds, and sends a DWR once it exceeds `idle`.
port, idle = int(sys.argv[1]), int(sys.argv[2])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(relativeCreated)6d ms %(name)s %(message)s")

node = Node("gw.python.test", "python.test")
node.idle_timeout = idle
# How often its event loop checks the timers (seconds).
node.wakeup_interval = 0.1
peer = node.add_peer(f"aaa://ocs.numport.test:{port};transport=tcp", "numport.test",
                     ip_addresses=["127.0.0.1"], is_persistent=True, is_default=True)
app = SimpleThreadingApplication(APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True)
node.add_application(app, [peer])
node.start()
app.wait_for_ready(timeout=10)

session = node.session_generator.next_id()
steps = [
    (E_CC_REQUEST_TYPE_INITIAL_REQUEST, RequestedServiceUnit(cc_total_octets=1_000_000), None),
    (E_CC_REQUEST_TYPE_UPDATE_REQUEST, RequestedServiceUnit(cc_total_octets=1_000_000),
     UsedServiceUnit(cc_total_octets=800_000, cc_input_octets=300_000, cc_output_octets=500_000)),
    (E_CC_REQUEST_TYPE_TERMINATION_REQUEST, None, UsedServiceUnit(cc_total_octets=120_000, cc_time=42)),
]
for number, (request_type, rsu, usu) in enumerate(steps):
    ccr = CreditControlRequest()
    ccr.session_id = session
    ccr.origin_host = b"gw.python.test"
    ccr.origin_realm = b"python.test"
    ccr.destination_realm = b"numport.test"
    ccr.auth_application_id = APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    ccr.service_context_id = "32251@3gpp.org"
    ccr.cc_request_type = request_type
    ccr.cc_request_number = number
    ccr.subscription_id = [SubscriptionId(subscription_id_type=E_SUBSCRIPTION_ID_TYPE_END_USER_E164,
                                          subscription_id_data="4790000001")]
    ccr.multiple_services_indicator = 1
    mscc = MultipleServicesCreditControl(rating_group=10, service_identifier=[1])
    if rsu:
        mscc.requested_service_unit = rsu
    if usu:
        mscc.used_service_unit = [usu]
    ccr.multiple_services_credit_control = [mscc]
    cca = app.send_request(ccr, timeout=5)
    granted = [
        {"rating_group": m.rating_group,
         "total_octets": m.granted_service_unit.cc_total_octets if m.granted_service_unit else None,
         "validity_time": m.validity_time,
         "result_code": m.result_code}
        for m in cca.multiple_services_credit_control
    ]
    print(json.dumps({"session_id": cca.session_id, "result_code": cca.result_code,
                      "request_type": cca.cc_request_type, "request_number": cca.cc_request_number,
                      "mscc": granted}), flush=True)

# Silence: python-diameter sends a DWR after `idle` seconds, and answers the server's.
time.sleep(idle + 1.5)
node.stop(wait_timeout=5)
