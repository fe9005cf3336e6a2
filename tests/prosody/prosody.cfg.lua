-- Prosody configuration for xmpp-edge's integration tests.
-- The test support code fills in the @PLACEHOLDERS@ and runs Prosody on
-- loopback with its own data directory and pid file; it never touches the
-- system configuration or service.

run_as_root = true
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
certificates = "@DIR@/certs"
log = { { levels = { min = "@LOGLEVEL@" }, to = "file", filename = "@DIR@/prosody.log" } }

interfaces = { "127.0.0.1" }
c2s_ports = { @C2S_PORT@ }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }

-- xmpp-edge speaks plain TCP to this loopback server; PLAIN is allowed
-- because the leg never leaves the machine.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

modules_enabled = {
  "roster"; "saslauth"; "disco"; "presence"; "message"; "iq";
  "ping"; "posix"; "carbons"; "smacks";
}
modules_disabled = { "s2s"; "offline" }

-- No throttling of the test traffic.
limits = { c2s = { rate = "10mb/s" } }

VirtualHost "localhost"
