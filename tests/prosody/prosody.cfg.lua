-- Prosody configuration for xmpp-edge's integration tests.
-- The test support code fills in the @PLACEHOLDERS@ and runs Prosody on
-- loopback with its own data directory and pid file; it never touches the
-- system configuration or service.

run_as_root = true
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
certificates = "@DIR@/certs"
ssl = { options = { no_ticket = false } }
log = { { levels = { min = "@LOGLEVEL@" }, to = "file", filename = "@DIR@/prosody.log" } }

interfaces = { "127.0.0.1" }
c2s_ports = { @C2S_PORT@ }
c2s_direct_tls_ports = { @DIRECT_TLS_PORT@ }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }

-- xmpp-edge speaks plain TCP to this loopback server unless a test turns
-- TLS on; PLAIN is allowed because the leg never leaves the machine.
c2s_require_encryption = @REQUIRE_ENCRYPTION@
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

modules_enabled = {
  "roster"; "saslauth"; "disco"; "presence"; "message"; "iq";
  "ping"; "posix"; "carbons"; "smacks"; "tls";
}
modules_disabled = { "s2s"; "offline" }

-- No throttling of the test traffic.
limits = { c2s = { rate = "10mb/s" } }

VirtualHost "localhost"
@VHOST_OPTIONS@

-- A second domain for tests that need a name DNS will look up (resolvers
-- answer names under `localhost.` themselves, RFC 6761).
VirtualHost "example.test"
