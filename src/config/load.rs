//! Reading a TOML file into [`Config`], with errors that name the key and the
//! line: `config.toml:12:1: bosh.max_wait_secs: invalid type: ...`.

use std::path::Path;

use super::Config;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key has a wrong value, a wrong type, or should not be there.
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid {
        /// File name as given.
        file: String,
        /// 1-based line of the key.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key path, e.g. `bosh.max_wait_secs`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &path.display().to_string())
}

/// Loads and validates configuration text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
        let (line, column) = span.map_or((1, 1), |s| line_column(text, s.start));
        ConfigError::Invalid {
            file: file.to_owned(),
            line,
            column,
            key,
            message,
        }
    };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| invalid(e.span(), "(syntax)".to_owned(), e.message().to_owned()))?;
    let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_owned();
        if key == "." {
            key = "(top level)".to_owned();
        }
        invalid(inner.span(), key, message)
    })?;
    if let Err((path, message)) = validate(&config) {
        let span = locate(text, &path);
        return Err(invalid(span, dotted(&path), message));
    }
    Ok(config)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if p.contains('.') || p.is_empty() {
                format!("\"{p}\"")
            } else {
                p.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Finds the span of the deepest existing key along `path`.
fn locate(text: &str, path: &[String]) -> Option<std::ops::Range<usize>> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut span = None;
    for part in path {
        let (key, value) = table.get_key_value(part.as_str())?;
        span = Some(key.span());
        match value.get_ref().as_table() {
            Some(next) => table = next,
            None => break,
        }
    }
    span
}

type Invalid = (Vec<String>, String);

fn at(path: &[&str], message: impl Into<String>) -> Invalid {
    (
        path.iter().map(|s| (*s).to_owned()).collect(),
        message.into(),
    )
}

/// `[cluster]`: a secret from exactly one place, peers that parse, a
/// listener of its own.
fn validate_cluster(c: &Config) -> Result<(), Invalid> {
    let k = &c.cluster;
    if k.secret.is_some() && k.secret_file.is_some() {
        return Err(at(
            &["cluster", "secret_file"],
            "set `secret` or `secret_file`, not both",
        ));
    }
    if let Some(secret) = &k.secret
        && secret.trim().len() < 16
    {
        return Err(at(&["cluster", "secret"], "must be at least 16 bytes"));
    }
    for peer in &k.peers {
        if parse_host_port(peer).is_none() {
            return Err(at(
                &["cluster", "peers"],
                format!("`{peer}` is not host:port"),
            ));
        }
    }
    if !k.peer_dns.is_empty() && parse_host_port(&k.peer_dns).is_none() {
        return Err(at(
            &["cluster", "peer_dns"],
            format!("`{}` is not name:port", k.peer_dns),
        ));
    }
    for (key, value) in [
        ("refresh_secs", k.refresh_secs),
        ("forward_timeout_secs", k.forward_timeout_secs),
    ] {
        if value == 0 {
            return Err(at(&["cluster", key], "must be at least 1"));
        }
    }
    if !k.enabled {
        return Ok(());
    }
    if k.secret.is_none() && k.secret_file.is_none() {
        return Err(at(
            &["cluster", "enabled"],
            "cluster mode needs cluster.secret or cluster.secret_file",
        ));
    }
    for (key, addr, enabled) in [
        ("server", c.server.listen, true),
        ("metrics", c.metrics.listen, c.metrics.enabled),
        ("admin", c.admin.listen, c.admin.enabled),
        ("tls", c.tls.listen, !c.tls.certificates.is_empty()),
    ] {
        if enabled && addr == k.listen && addr.port() != 0 {
            return Err(at(
                &["cluster", "listen"],
                format!("must differ from {key}.listen"),
            ));
        }
    }
    Ok(())
}

/// Cross-field and value checks that serde cannot express.
fn validate(c: &Config) -> Result<(), Invalid> {
    if c.tls.redirect_http && c.tls.certificates.is_empty() {
        return Err(at(
            &["tls", "redirect_http"],
            "needs at least one [[tls.certificates]]",
        ));
    }
    if !c.tls.certificates.is_empty() && c.tls.listen == c.server.listen && c.tls.listen.port() != 0
    {
        return Err(at(&["tls", "listen"], "must differ from server.listen"));
    }
    if c.tls.reload_check_secs == 0 {
        return Err(at(&["tls", "reload_check_secs"], "must be at least 1"));
    }
    let l = &c.limits;
    for (key, value) in [
        ("max_sessions", l.max_sessions),
        ("max_sessions_per_ip", l.max_sessions_per_ip),
        ("new_sessions_per_ip_per_sec", l.new_sessions_per_ip_per_sec),
        ("max_attributes", u32::from(l.max_attributes)),
        (
            "header_read_timeout_secs",
            u32::from(l.header_read_timeout_secs),
        ),
        (
            "tls_handshake_timeout_secs",
            u32::from(l.tls_handshake_timeout_secs),
        ),
    ] {
        if value == 0 {
            return Err(at(&["limits", key], "must be at least 1"));
        }
    }
    if c.server.shutdown_grace_secs == 0 {
        return Err(at(&["server", "shutdown_grace_secs"], "must be at least 1"));
    }
    let a = &c.admin;
    if a.token.is_some() && a.token_file.is_some() {
        return Err(at(
            &["admin", "token_file"],
            "set `token` or `token_file`, not both",
        ));
    }
    if let Some(token) = &a.token
        && token.len() < 16
    {
        return Err(at(&["admin", "token"], "must be at least 16 characters"));
    }
    if a.enabled && !a.listen.ip().is_loopback() && a.token.is_none() && a.token_file.is_none() {
        return Err(at(
            &["admin", "listen"],
            format!(
                "{} is not a loopback address: set admin.token or admin.token_file",
                a.listen
            ),
        ));
    }
    if c.metrics.enabled
        && a.enabled
        && c.metrics.listen == a.listen
        && c.metrics.listen.port() != 0
    {
        return Err(at(&["admin", "listen"], "must differ from metrics.listen"));
    }
    for (key, addr, enabled) in [
        ("metrics", c.metrics.listen, c.metrics.enabled),
        ("admin", c.admin.listen, c.admin.enabled),
    ] {
        if enabled && addr == c.server.listen && addr.port() != 0 {
            return Err(at(&[key, "listen"], "must differ from server.listen"));
        }
    }
    validate_cluster(c)?;
    let b = &c.bosh;
    if b.paths.is_empty() {
        return Err(at(&["bosh", "paths"], "at least one path is needed"));
    }
    for (i, path) in b.paths.iter().enumerate() {
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(at(
                &["bosh", "paths"],
                format!("`{path}` must be a URL path starting with /"),
            ));
        }
        if b.paths[..i].contains(path) {
            return Err(at(&["bosh", "paths"], format!("`{path}` is listed twice")));
        }
    }
    if b.max_wait_secs == 0 {
        return Err(at(&["bosh", "max_wait_secs"], "must be at least 1"));
    }
    if !(1..=8).contains(&b.max_hold) {
        return Err(at(&["bosh", "max_hold"], "must be between 1 and 8"));
    }
    if b.inactivity_secs < 2 {
        return Err(at(&["bosh", "inactivity_secs"], "must be at least 2"));
    }
    if b.polling_secs >= b.inactivity_secs {
        return Err(at(
            &["bosh", "polling_secs"],
            "must be lower than inactivity_secs",
        ));
    }
    if b.max_body_bytes < 1024 {
        return Err(at(&["bosh", "max_body_bytes"], "must be at least 1024"));
    }
    if b.max_queued_bytes < 1024 {
        return Err(at(&["bosh", "max_queued_bytes"], "must be at least 1024"));
    }
    for origin in &b.cors_origins {
        if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(at(
                &["bosh", "cors_origins"],
                format!("`{origin}` must be `*` or an origin such as https://example.com"),
            ));
        }
    }
    for target in &b.route_allowlist {
        if parse_host_port(target).is_none() {
            return Err(at(
                &["bosh", "route_allowlist"],
                format!("`{target}` is not host:port"),
            ));
        }
    }
    let w = &c.websocket;
    if w.paths.is_empty() {
        return Err(at(&["websocket", "paths"], "at least one path is needed"));
    }
    for (i, path) in w.paths.iter().enumerate() {
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(at(
                &["websocket", "paths"],
                format!("`{path}` must be a URL path starting with /"),
            ));
        }
        if w.paths[..i].contains(path) || b.paths.contains(path) {
            return Err(at(
                &["websocket", "paths"],
                format!("`{path}` is used twice"),
            ));
        }
    }
    if w.max_message_bytes < 4096 {
        return Err(at(
            &["websocket", "max_message_bytes"],
            "must be at least 4096",
        ));
    }
    if !(256..=1024 * 1024).contains(&w.read_buffer_bytes) {
        return Err(at(
            &["websocket", "read_buffer_bytes"],
            "must be between 256 and 1048576",
        ));
    }
    if w.max_backlog_bytes < w.max_message_bytes.min(c.upstream.max_stanza_bytes) {
        return Err(at(
            &["websocket", "max_backlog_bytes"],
            "must hold at least one stanza (max_stanza_bytes)",
        ));
    }
    for (key, value) in [
        ("open_timeout_secs", w.open_timeout_secs),
        ("ping_interval_secs", w.ping_interval_secs),
        ("close_timeout_secs", w.close_timeout_secs),
    ] {
        if value == 0 {
            return Err(at(&["websocket", key], "must be at least 1"));
        }
    }
    if w.idle_timeout_secs <= w.ping_interval_secs {
        return Err(at(
            &["websocket", "idle_timeout_secs"],
            "must be longer than ping_interval_secs",
        ));
    }
    for origin in &w.allowed_origins {
        if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(at(
                &["websocket", "allowed_origins"],
                format!("`{origin}` must be `*` or an origin such as https://example.com"),
            ));
        }
    }
    if let Some(uri) = &w.see_other_uri
        && !(uri.starts_with("wss://") || uri.starts_with("https://"))
    {
        // WS-31: clients must not be sent to a less secure transport.
        return Err(at(
            &["websocket", "see_other_uri"],
            "must be a wss:// or https:// URI",
        ));
    }
    let u = &c.upstream;
    for (key, value) in [
        ("connect_timeout_secs", u.connect_timeout_secs),
        ("write_timeout_secs", u.write_timeout_secs),
    ] {
        if value == 0 {
            return Err(at(&["upstream", key], "must be at least 1"));
        }
    }
    if u.max_write_queue_bytes < 4096 {
        return Err(at(
            &["upstream", "max_write_queue_bytes"],
            "must be at least 4096",
        ));
    }
    if u.max_stanza_bytes < 4096 {
        return Err(at(
            &["upstream", "max_stanza_bytes"],
            "must be at least 4096",
        ));
    }
    if !(4..=256).contains(&u.max_depth) {
        return Err(at(&["upstream", "max_depth"], "must be between 4 and 256"));
    }
    if u.failure_threshold == 0 {
        return Err(at(&["upstream", "failure_threshold"], "must be at least 1"));
    }
    if u.backoff_initial_secs == 0 || u.backoff_initial_secs > u.backoff_max_secs {
        return Err(at(
            &["upstream", "backoff_initial_secs"],
            "must be at least 1 and at most backoff_max_secs",
        ));
    }
    if u.handshake_timeout_secs == 0 {
        return Err(at(
            &["upstream", "handshake_timeout_secs"],
            "must be at least 1",
        ));
    }
    for proxy in &c.server.trusted_proxies {
        if parse_network(proxy).is_none() {
            return Err(at(
                &["server", "trusted_proxies"],
                format!("`{proxy}` is not an IP address or CIDR block"),
            ));
        }
    }
    if c.hosts.is_empty() {
        return Err(at(&["hosts"], "at least one served domain is needed"));
    }
    for (domain, host) in &c.hosts {
        let key = |field: &str| vec!["hosts".to_owned(), domain.clone(), field.to_owned()];
        if domain.is_empty()
            || domain
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace() || b == b'/')
        {
            return Err((
                vec!["hosts".to_owned(), domain.clone()],
                "domain must be non-empty and lower-case".to_owned(),
            ));
        }
        if host.upstreams.is_empty() && !host.srv {
            return Err((
                key("upstreams"),
                "list upstreams, or set srv = true".to_owned(),
            ));
        }
        if !host.upstreams.is_empty() && host.srv {
            return Err((
                key("srv"),
                "use either a static upstreams list or srv = true".to_owned(),
            ));
        }
        for upstream in &host.upstreams {
            if parse_host_port(upstream.addr()).is_none() {
                return Err((
                    key("upstreams"),
                    format!("`{}` is not host:port", upstream.addr()),
                ));
            }
            if let crate::config::UpstreamEntry::Details(d) = upstream
                && d.weight == 0
            {
                return Err((
                    key("upstreams"),
                    format!("`{}`: weight must be at least 1", d.address),
                ));
            }
        }
        if host.warm_connections > 0 && host.proxy_protocol.is_some() {
            return Err((
                key("warm_connections"),
                "pre-dialed connections cannot carry a PROXY header (it must name the client)"
                    .to_owned(),
            ));
        }
        if host.warm_connections > 64 {
            return Err((key("warm_connections"), "must be at most 64".to_owned()));
        }
        if let Some(file) = &host.tls_ca_file
            && let Err(e) = std::fs::metadata(file)
        {
            return Err((key("tls_ca_file"), format!("`{file}`: {e}")));
        }
        if let Some(url) = &host.public_base_url
            && let Err(message) = check_public_base_url(url)
        {
            return Err((key("public_base_url"), message));
        }
    }
    Ok(())
}

/// WS-42: discovery links must be `https://`/`wss://`; plain `http://` is
/// accepted only for loopback hosts (local development).
fn check_public_base_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    if name.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "`{url}` must be https:// (clients only use discovered endpoints over TLS; \
             http:// is allowed for localhost only)"
        )),
    }
}

/// An IP address or CIDR block.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// Splits `host:port` (IPv6 literals in brackets) into its parts.
pub fn parse_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        (host, rest.strip_prefix(':')?)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then_some((host, port))
}
