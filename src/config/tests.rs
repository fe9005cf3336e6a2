use super::*;

fn error_of(text: &str) -> String {
    match load_str(text, "test.toml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = load_str("", "test.toml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:5280");
    assert_eq!(c.bosh.paths, ["/http-bind"]);
    assert_eq!(
        c.hosts["localhost"].upstreams,
        [UpstreamEntry::address("127.0.0.1:5222")]
    );
    assert_eq!(c.bosh.max_wait_secs, 50);
}

#[test]
fn the_shipped_example_is_valid_and_matches_the_defaults_it_documents() {
    let text = include_str!("../../config/xmpp-edge.toml");
    let c = load_str(text, "config/xmpp-edge.toml").unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:5280");
    assert_eq!(
        c.hosts["localhost"].upstreams,
        [UpstreamEntry::address("127.0.0.1:5222")]
    );
    assert_eq!(c.bosh, Config::default().bosh);
    assert_eq!(c.cluster, Config::default().cluster);
}

#[test]
fn unknown_key_names_the_key_and_line() {
    let e = error_of("[server]\nlisten = \"127.0.0.1:1\"\n\n[bosh]\nmax_waitt_secs = 3\n");
    assert!(
        e.starts_with("test.toml:5:1: bosh.max_waitt_secs: unknown field"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key_and_line() {
    let e = error_of("[bosh]\nmax_hold = \"one\"\n");
    assert!(e.starts_with("test.toml:2:"), "{e}");
    assert!(e.contains("bosh.max_hold"), "{e}");
}

#[test]
fn bad_listen_address_is_reported() {
    let e = error_of("[server]\nlisten = \"nowhere\"\n");
    assert!(
        e.starts_with("test.toml:2:") && e.contains("server.listen"),
        "{e}"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let e = error_of("[bosh\n");
    assert!(e.starts_with("test.toml:1:"), "{e}");
}

#[test]
fn validation_errors_point_at_the_key() {
    let e = error_of("[bosh]\nmax_hold = 0\n");
    assert_eq!(e, "test.toml:2:1: bosh.max_hold: must be between 1 and 8");
    let e = error_of("[hosts.\"example.com\"]\nupstreams = [\"no-port\"]\n");
    assert_eq!(
        e,
        "test.toml:2:1: hosts.\"example.com\".upstreams: `no-port` is not host:port"
    );
    let e = error_of("[hosts.Example]\nupstreams = [\"a:1\"]\n");
    assert!(e.contains("lower-case"), "{e}");
    let e = error_of("[bosh]\npaths = [\"http-bind\"]\n");
    assert!(e.starts_with("test.toml:2:1: bosh.paths:"), "{e}");
}

#[test]
fn route_allowlist_and_several_paths() {
    let c = load_str(
        "[bosh]\npaths = [\"/http-bind\", \"/bosh\"]\nroute_allowlist = [\"[::1]:5222\", \"xmpp.example.com:5222\"]\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.bosh.paths.len(), 2);
}

#[test]
fn effective_config_round_trips() {
    let c = Config::default();
    assert_eq!(load_str(&c.to_toml(), "rendered").unwrap(), c);
}

#[test]
fn host_port_parsing() {
    use super::load::parse_host_port;
    assert_eq!(parse_host_port("127.0.0.1:5222"), Some(("127.0.0.1", 5222)));
    assert_eq!(parse_host_port("[::1]:5222"), Some(("::1", 5222)));
    assert_eq!(
        parse_host_port("xmpp.example.com:5222"),
        Some(("xmpp.example.com", 5222))
    );
    assert_eq!(parse_host_port("::1:5222"), None);
    assert_eq!(parse_host_port("host:0"), None);
    assert_eq!(parse_host_port("host"), None);
    assert_eq!(parse_host_port(":5222"), None);
}

#[test]
fn websocket_section_defaults_and_checks() {
    let c = load_str("", "t").unwrap();
    assert_eq!(c.websocket.paths, ["/xmpp-websocket"]);
    assert!(c.websocket.require_subprotocol);
    let e = error_of("[websocket]\nsee_other_uri = \"ws://other.example/ws\"\n");
    assert!(
        e.starts_with("test.toml:2:1: websocket.see_other_uri:"),
        "{e}"
    );
    let e = error_of("[websocket]\npaths = [\"/http-bind\"]\n");
    assert!(e.contains("used twice"), "{e}");
    let e = error_of("[websocket]\nidle_timeout_secs = 10\nping_interval_secs = 30\n");
    assert!(e.contains("websocket.idle_timeout_secs"), "{e}");
}

#[test]
fn ws_42_public_base_url_must_be_https_except_on_loopback() {
    let ok = |url: &str| {
        load_str(
            &format!(
                "[hosts.\"example.com\"]\nupstreams = [\"a:1\"]\npublic_base_url = \"{url}\"\n"
            ),
            "t",
        )
    };
    assert!(ok("https://chat.example.com").is_ok());
    assert!(ok("https://chat.example.com:8443/xmpp").is_ok());
    assert!(ok("http://localhost:5280").is_ok());
    assert!(ok("http://127.0.0.1:5280").is_ok());
    let e = ok("http://chat.example.com").unwrap_err().to_string();
    assert!(
        e.contains("public_base_url") && e.contains("https://"),
        "{e}"
    );
    assert!(ok("chat.example.com").is_err());
}

#[test]
fn cluster_is_off_by_default_and_needs_exactly_one_secret() {
    let c = load_str("", "test.toml").unwrap();
    assert!(!c.cluster.enabled);
    assert_eq!(c.cluster.listen.to_string(), "0.0.0.0:5290");
    assert_eq!(c.cluster.refresh_secs, 10);
    assert_eq!(c.cluster.forward_timeout_secs, 5);
    let e = error_of("[cluster]\nenabled = true\n");
    assert!(
        e.starts_with("test.toml:2:1: cluster.enabled: cluster mode needs cluster.secret"),
        "{e}"
    );
    let e = error_of(
        "[cluster]\nenabled = true\nsecret = \"0123456789abcdef\"\nsecret_file = \"/s\"\n",
    );
    assert!(
        e.starts_with("test.toml:4:1: cluster.secret_file: set `secret` or `secret_file`"),
        "{e}"
    );
    let e = error_of("[cluster]\nenabled = true\nsecret = \"short\"\n");
    assert!(
        e.starts_with("test.toml:3:1: cluster.secret: must be at least 16"),
        "{e}"
    );
    let e = error_of("[cluster]\npeers = [\"10.0.0.1\"]\n");
    assert!(
        e.starts_with("test.toml:2:1: cluster.peers: `10.0.0.1`"),
        "{e}"
    );
    let e = error_of("[cluster]\npeer_dns = \"peers.svc\"\n");
    assert!(e.starts_with("test.toml:2:1: cluster.peer_dns:"), "{e}");
    let e = error_of("[cluster]\nrefresh_secs = 0\n");
    assert!(e.starts_with("test.toml:2:1: cluster.refresh_secs:"), "{e}");
    let e = error_of("[cluster]\npeerz = []\n");
    assert!(
        e.starts_with("test.toml:2:1: cluster.peerz: unknown field"),
        "{e}"
    );
    let e = error_of(
        "[server]\nlisten = \"0.0.0.0:5290\"\n[cluster]\nenabled = true\nsecret = \"0123456789abcdef\"\n",
    );
    assert!(
        e.contains("cluster.listen: must differ from server.listen"),
        "{e}"
    );
    let c = load_str(
        "[cluster]\nenabled = true\nsecret_file = \"/etc/xmpp-edge/cluster/secret\"\n\
         peers = [\"10.0.0.1:5290\", \"edge-0.edge:5290\"]\n\
         peer_dns = \"xmpp-edge-peers.ns.svc.cluster.local:5290\"\n",
        "test.toml",
    )
    .unwrap();
    assert!(c.cluster.enabled);
}
