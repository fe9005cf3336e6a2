// node-xmpp-bosh configuration for the benchmarks; `start` passes the port
// (and the HTTP path and log level) on the command line, which wins.
// The XMPP server is the domain's address from the hosts file, port 5222:
// node-xmpp-bosh 0.7.10 hard-codes that port for WebSocket sessions (its
// `lookup_service` option reaches only the BOSH side), so the bench Prosody
// for this peer listens on 127.0.0.1:5222.
exports.config = {
  host: '127.0.0.1',
  path: /^\/http-bind(\/+)?$/,
  logging: 'FATAL',
  max_data_held: 100000,
  max_xmpp_stanza_size: 500000,
  max_bosh_connections: 2,
  window_size: 2,
  default_inactivity: 70,
  max_inactivity: 160,
  http_socket_keepalive: 60,
  max_streams_per_session: 8,
  http_headers: {},
  no_tls_domains: [],
  firewall: { deny: [] },
  route_filter: /.*/,
  pidgin_compatible: true,
  trim_default_length: 256,
  system_info_password: '',
  websocket_ping_interval: 30,
};
