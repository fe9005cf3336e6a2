-- A local Prosody for trying xmpp-edge (used by scripts/quickstart).
-- scripts/quickstart fills in @DIR@ and @C2S_PORT@ and runs Prosody on
-- loopback with its own data directory; the system Prosody is not touched.

run_as_root = true
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
certificates = "@DIR@/certs"
log = { { levels = { min = "info" }, to = "file", filename = "@DIR@/prosody.log" } }

interfaces = { "127.0.0.1", "::1" }
c2s_ports = { @C2S_PORT@ }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }

-- xmpp-edge reaches this server over loopback only, so the c2s leg is not
-- encrypted here; clients talk to xmpp-edge (put TLS in front of it).
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"

modules_enabled = {
  "roster"; "saslauth"; "disco"; "presence"; "message"; "iq"; "ping";
  "posix"; "carbons"; "smacks"; "vcard_legacy"; "private"; "blocklist";
}
modules_disabled = { "s2s" }

VirtualHost "localhost"
