-- Prosody for the benchmarks: one loopback server behind every system
-- compared (xmpp-edge, Prosody's own BOSH and WebSocket, node-xmpp-bosh,
-- and the direct c2s baseline). Sessions log in anonymously, so thousands
-- need no accounts. Scripts fill in the @PLACEHOLDERS@.

run_as_root = true
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
log = { { levels = { min = "error" }, to = "file", filename = "@DIR@/prosody.log" } }

interfaces = { "127.0.0.1" }
c2s_ports = { @C2S_PORT@ }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { @HTTP_PORT@ }
http_interfaces = { "127.0.0.1" }
https_ports = { }

c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "anonymous"
storage = "internal"
-- Many sessions, little per-session work: nothing that writes to disk.
modules_enabled = {
  "saslauth"; "disco"; "presence"; "message"; "iq"; "ping"; "posix";
  "bosh"; "websocket";
}
modules_disabled = { "s2s"; "offline"; "roster"; "carbons"; "smacks"; "tls" }
consider_bosh_secure = true
consider_websocket_secure = true
cross_domain_bosh = true
cross_domain_websocket = true
bosh_max_wait = 60
network_settings = { read_timeout = 900 }

VirtualHost "localhost"
