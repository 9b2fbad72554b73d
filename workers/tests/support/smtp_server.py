"""A real SMTP server for the notify tests: aiosmtpd with STARTTLS required and AUTH PLAIN
(user `notify`, password `s3cret`). Every message accepted is written to OUT_DIR as
<n>.eml. Usage: smtp_server.py PORT CERT KEY OUT_DIR"""
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Handler:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        Handler.count += 1
        path = os.path.join(out, f"{Handler.count}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(b"X-Tls: " + str(session.ssl is not None).encode() + b"\r\n")
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"notify"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=port,
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_require_tls=True,
    ready_timeout=10,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
