#!/usr/bin/env python3
"""Writes the hand-written scenarios of the `bosh_session` target as seed files.

The target decodes its input with `arbitrary` (derived on the types in
src/targets/bosh_session.rs); this file encodes scenarios the way arbitrary
1.x decodes them, so that the seeds start the fuzzer from real sessions
(login with restart, out-of-order rids, repeats, pause, acks, upstream
failures, backpressure, ...) instead of from noise.

Keep it in step with the enums of the target: variant order and count. After
changing either, run it and check a seed with
`RUSTC_BOOTSTRAP=1 cargo fuzz fmt bosh_session corpus/bosh_session/01-login`
(the Debug output must read as the scenario below).

Usage: python3 fuzz/seeds/bosh_session.py   (writes fuzz/corpus/bosh_session/)
"""
import os
import struct

class Enc:
    def __init__(self):
        self.front = bytearray()
        self.lengths = []          # string lengths, in parse order

    def u8(self, v): self.front += struct.pack("<B", v & 0xFF)
    def i8(self, v): self.front += struct.pack("<b", v)
    def u16(self, v): self.front += struct.pack("<H", v)
    def u32(self, v): self.front += struct.pack("<I", v)
    def bool(self, v): self.u8(1 if v else 0)
    def variant(self, index, count):
        # derive(Arbitrary): (u64(u32) * count) >> 32 picks the variant
        v = -(-(index << 32) // count)
        assert (v * count) >> 32 == index
        self.u32(v)
    def option(self, value, put):
        self.bool(value is not None)
        if value is not None:
            put(value)
    def string(self, s):
        # arbitrary takes a string's length from the end of the data
        b = s.encode()
        self.front += b
        self.lengths.append(len(b))

    def finish(self):
        self.bool(False)                   # end of the ops list
        data = bytes(self.front) + bytes(reversed(self.lengths))
        assert len(data) <= 256 or not any(self.lengths), "keep seeds with text under 256 bytes"
        return data

# --- the target's types (src/targets/bosh_session.rs) ---

def creation(e, rid=1000, hold=1, wait=60, ver=True, acks=False, keys=False,
             max_hold=1, enforce=True, maxpause=2, polling=2, queued_kib=7):
    e.u32(rid - 1)                         # the target adds 1
    e.option(hold, e.u8)
    e.option(wait, e.u8)
    e.bool(ver); e.bool(acks); e.bool(keys)
    e.u8(max_hold - 1)                     # max_hold % 3 + 1
    e.bool(enforce)
    e.u8(maxpause)                         # [0, 30, 120][n % 3]
    e.u8(polling)
    e.u8(queued_kib)                       # (n % 8 + 1) * 256 bytes

OPS = 8
def op(e, index):
    e.bool(True)                           # one more op
    e.variant(index, OPS)

PAYLOAD = {"empty": 0, "messages": 1, "text": 2, "comment": 3, "starttls": 4, "raw": 5}

def request(e, rid=("next",), ack=None, pause=None, terminate=False, restart=False,
            bad_key=False, payload=("empty",)):
    op(e, 0)
    kind = rid[0]
    if kind == "next":
        e.variant(0, 3)
    elif kind == "offset":
        e.variant(1, 3); e.i8(rid[1])
    else:
        e.variant(2, 3); e.u8(rid[1])
    def put_ack(a):
        if a[0] == "honest":
            e.variant(0, 2)
        else:
            e.variant(1, 2); e.i8(a[1])
    e.option(ack, put_ack)
    e.option(pause, e.u8)
    e.bool(terminate); e.bool(restart); e.bool(bad_key)
    e.variant(PAYLOAD[payload[0]], 6)
    if payload[0] == "messages":
        e.u8(payload[1])
    elif payload[0] in ("text", "raw"):
        e.string(payload[1])

def gone(e, index): op(e, 1); e.u8(index)

def server(e, kind, *args):
    op(e, 2)
    if kind == "header":
        e.variant(0, 5)
    elif kind == "element":
        # templates: 0 message, 1 presence, 2 features, 3 success, 4 bind result,
        # 5 stream error, 6 sm <r/>, 7 large message
        e.variant(1, 5); e.u8(args[0]); e.string(args[1] if len(args) > 1 else "")
    elif kind == "raw":
        e.variant(2, 5); e.string(args[0])
    elif kind == "closed":
        e.variant(3, 5)
    else:
        e.variant(4, 5); e.u8(args[0])     # 0 lost, 1 host unknown, 2 write stalled

def advance_ms(e, ms): op(e, 3); e.u16(ms // 10)
def jump(e, secs): op(e, 4); e.u8(secs)
def tick(e): op(e, 5)
def shutdown(e): op(e, 6)
def kick(e): op(e, 7)

def established(e, **kw):
    creation(e, **kw)
    server(e, "header")
    server(e, "element", 2)

# --- scenarios ---

def s01_login(e):
    established(e)
    request(e, payload=("messages", 0))    # stands in for <auth/>
    server(e, "element", 3)                 # <success/>
    request(e, restart=True)
    server(e, "header")
    server(e, "element", 2)
    request(e, payload=("messages", 0))    # bind
    server(e, "element", 4)
    advance_ms(e, 2500)
    request(e, payload=("messages", 1))
    server(e, "element", 0, "hi")
    request(e, terminate=True, payload=("messages", 0))

def s02_out_of_order(e):
    established(e, hold=2, max_hold=2)
    request(e, rid=("offset", 2), payload=("messages", 0))
    request(e, rid=("offset", -1), payload=("messages", 1))
    request(e, payload=("messages", 2))
    server(e, "element", 0)
    advance_ms(e, 61000)

def s03_repeat_gets_cached_response(e):
    established(e)
    request(e, payload=("messages", 0))
    server(e, "element", 0, "one")
    request(e)
    request(e, rid=("repeat", 1))
    request(e, rid=("repeat", 1))
    advance_ms(e, 61000)

def s04_pause(e):
    established(e)
    request(e)
    request(e, pause=40)
    server(e, "element", 1)
    advance_ms(e, 30000)
    request(e, payload=("messages", 0))
    advance_ms(e, 121000)

def s05_acks(e):
    established(e, acks=True, hold=2, max_hold=2)
    request(e, ack=("honest",))
    server(e, "element", 0)
    request(e, ack=("honest",))
    request(e, ack=("offset", -3))
    advance_ms(e, 61000)

def s06_upstream_lost_without_request(e):
    established(e)
    request(e)
    advance_ms(e, 61000)
    server(e, "element", 0)
    server(e, "failed", 0)
    request(e)
    request(e)

def s07_stream_error_with_a_request_gone(e):
    established(e, hold=2, max_hold=2)
    request(e)
    request(e)
    gone(e, 1)
    server(e, "element", 5, "bye")

def s08_shutdown_and_kick(e):
    established(e, hold=2, max_hold=2)
    request(e)
    server(e, "element", 0)
    shutdown(e)
    kick(e)
    request(e)

def s09_backpressure(e):
    established(e, queued_kib=0)
    for _ in range(6):
        server(e, "element", 7, "x" * 8)
    request(e)
    request(e)

def s10_keys(e):
    established(e, keys=True)
    request(e, bad_key=True)

def s11_bad_payloads(e):
    established(e, hold=2, max_hold=2)
    request(e)
    request(e, payload=("comment",))
    request(e, payload=("starttls",))

def s12_legacy_out_of_window(e):
    established(e, ver=False)
    request(e, rid=("offset", 5))

def s13_server_closes(e):
    established(e)
    request(e)
    server(e, "element", 6)
    server(e, "closed")
    jump(e, 5)
    tick(e)
    request(e)

def s14_polling_session(e):
    established(e, hold=0, wait=0, enforce=True)
    request(e)
    request(e)
    advance_ms(e, 1000)
    request(e)

def s15_text_payload(e):
    established(e)
    request(e, payload=("text", "caf\u00e9 <b> & \u263a"))
    request(e, payload=("raw", "<presence/>"))
    server(e, "raw", "<message id='1'><body>raw</body></message>")

SCENARIOS = [v for k, v in sorted(globals().items()) if k.startswith("s") and k[1:3].isdigit()]

def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "bosh_session")
    os.makedirs(out, exist_ok=True)
    for scenario in SCENARIOS:
        e = Enc()
        scenario(e)
        name = scenario.__name__[1:].replace("_", "-")
        with open(os.path.join(out, name), "wb") as f:
            f.write(e.finish())
    print(f"{len(SCENARIOS)} seeds in {os.path.normpath(out)}")

if __name__ == "__main__":
    main()
