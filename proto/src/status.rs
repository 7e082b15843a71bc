//! Response status codes: a closed set, each with a short stable name that
//! the CLI prints and scripts may match on.

/// Outcome of one RPC, the first byte of every response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    BadRequest = 1,
    Unauthenticated = 2,
    Forbidden = 3,
    NotFound = 4,
    TooLarge = 5,
    QuotaExceeded = 6,
    RateLimited = 7,
    UnknownMethod = 8,
    Unavailable = 9,
    Internal = 10,
    Conflict = 11,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Ok,
        Status::BadRequest,
        Status::Unauthenticated,
        Status::Forbidden,
        Status::NotFound,
        Status::TooLarge,
        Status::QuotaExceeded,
        Status::RateLimited,
        Status::UnknownMethod,
        Status::Unavailable,
        Status::Internal,
        Status::Conflict,
    ];

    /// The stable name printed by tools, e.g. `quota_exceeded`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadRequest => "bad_request",
            Status::Unauthenticated => "unauthenticated",
            Status::Forbidden => "forbidden",
            Status::NotFound => "not_found",
            Status::TooLarge => "too_large",
            Status::QuotaExceeded => "quota_exceeded",
            Status::RateLimited => "rate_limited",
            Status::UnknownMethod => "unknown_method",
            Status::Unavailable => "unavailable",
            Status::Internal => "internal",
            Status::Conflict => "conflict",
        }
    }

    pub fn from_u8(code: u8) -> Option<Status> {
        Status::ALL.get(usize::from(code)).copied()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for s in Status::ALL {
            assert_eq!(Status::from_u8(s as u8), Some(s));
            assert!(names.insert(s.name()), "duplicate name {}", s.name());
        }
        assert_eq!(Status::from_u8(Status::ALL.len() as u8), None);
        assert_eq!(Status::from_u8(255), None);
    }
}
