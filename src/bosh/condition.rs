//! The terminal binding conditions of XEP-0124 §17.2 (BOSH-82a..m).

/// Why a BOSH session ended, as written in `<body type='terminate' condition='…'/>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    /// BOSH-82a: the request was not understood.
    BadRequest,
    /// BOSH-82b: the target domain is no longer served.
    HostGone,
    /// BOSH-82c: the target domain (or route) is not served.
    HostUnknown,
    /// BOSH-82d: `to` missing or empty.
    ImproperAddressing,
    /// BOSH-82e: a failure inside xmpp-edge.
    InternalServerError,
    /// BOSH-82f: unknown sid, rid outside the window, or a key-chain failure.
    ItemNotFound,
    /// BOSH-82g: another request of the session caused the termination.
    OtherRequest,
    /// BOSH-82h: too many or too frequent requests, or an oversized one.
    PolicyViolation,
    /// BOSH-82i: the upstream server could not be reached or the connection was lost.
    RemoteConnectionFailed,
    /// BOSH-82j: the upstream server sent a stream error (carried in the body).
    RemoteStreamError,
    /// BOSH-82k: this URI is not served; use the one in the body.
    SeeOtherUri,
    /// BOSH-82l: xmpp-edge is shutting down.
    SystemShutdown,
    /// BOSH-82m: anything else.
    UndefinedCondition,
}

impl Condition {
    /// Every condition, for metrics label sets and tests.
    pub const ALL: [Self; 13] = [
        Self::BadRequest,
        Self::HostGone,
        Self::HostUnknown,
        Self::ImproperAddressing,
        Self::InternalServerError,
        Self::ItemNotFound,
        Self::OtherRequest,
        Self::PolicyViolation,
        Self::RemoteConnectionFailed,
        Self::RemoteStreamError,
        Self::SeeOtherUri,
        Self::SystemShutdown,
        Self::UndefinedCondition,
    ];

    /// The wire name of the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::HostGone => "host-gone",
            Self::HostUnknown => "host-unknown",
            Self::ImproperAddressing => "improper-addressing",
            Self::InternalServerError => "internal-server-error",
            Self::ItemNotFound => "item-not-found",
            Self::OtherRequest => "other-request",
            Self::PolicyViolation => "policy-violation",
            Self::RemoteConnectionFailed => "remote-connection-failed",
            Self::RemoteStreamError => "remote-stream-error",
            Self::SeeOtherUri => "see-other-uri",
            Self::SystemShutdown => "system-shutdown",
            Self::UndefinedCondition => "undefined-condition",
        }
    }

    /// The HTTP status a legacy client (no `ver` on session creation) gets
    /// instead of a terminal body (BOSH-85); 200 for everything else.
    pub fn legacy_http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::PolicyViolation => 403,
            Self::ItemNotFound => 404,
            _ => 200,
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bosh_82_every_condition_has_its_wire_name() {
        let names: Vec<_> = Condition::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "bad-request",
                "host-gone",
                "host-unknown",
                "improper-addressing",
                "internal-server-error",
                "item-not-found",
                "other-request",
                "policy-violation",
                "remote-connection-failed",
                "remote-stream-error",
                "see-other-uri",
                "system-shutdown",
                "undefined-condition",
            ]
        );
    }

    #[test]
    fn bosh_85_legacy_status_codes() {
        assert_eq!(Condition::BadRequest.legacy_http_status(), 400);
        assert_eq!(Condition::PolicyViolation.legacy_http_status(), 403);
        assert_eq!(Condition::ItemNotFound.legacy_http_status(), 404);
        assert_eq!(Condition::RemoteConnectionFailed.legacy_http_status(), 200);
    }
}
