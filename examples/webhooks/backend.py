"""A webhook backend for Switchboard in a few lines of Python (standard
library only): run it, then start the hub with

    SWITCHBOARD_HOOKS__SECRET=shared-with-the-backend \
    SWITCHBOARD_HOOKS__PUBLISH__URL=http://127.0.0.1:8000/hooks/publish \
    SWITCHBOARD_HOOKS__RPC__URL=http://127.0.0.1:8000/hooks/rpc \
        cargo run --release -p switchboard-server

docs/HOOKS.md describes every request and reply.
"""
import hashlib, hmac, json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = b"shared-with-the-backend"
WINDOW = 300  # seconds: a request signed longer ago than this is refused

def signed(headers, body):
    """The hub signs "<timestamp>.<body>": a captured request cannot be sent
    again once its timestamp is out of the window, nor re-dated."""
    timestamp = headers.get("X-Switchboard-Timestamp", "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(time.time() - int(timestamp)) > WINDOW:
        return False
    message = timestamp.encode() + b"." + body
    expected = ("sha256=" + hmac.new(SECRET, message, hashlib.sha256).hexdigest()).encode()
    given = headers.get("X-Switchboard-Signature", "").encode("latin-1", "replace")
    return hmac.compare_digest(expected, given)

class Hooks(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not signed(self.headers, body):
            self.send_response(403); self.end_headers(); return
        event = json.loads(body)
        reply = {}
        if event["hook"] == "publish" and len(str(event["data"])) > 2000:
            reply = {"refuse": {"message": "at most 2000 characters"}}
        elif event["hook"] == "rpc" and event["method"] == "time":
            reply = {"data": time.time()}
        out = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
HTTPServer(("127.0.0.1", port), Hooks).serve_forever()
