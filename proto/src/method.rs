//! Method ids of requests and event ids of server pushes. Each service owns
//! a hundred; ids are never reused.

macro_rules! ids {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $id:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum $name { $($(#[$vm])* $variant = $id,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn from_u16(id: u16) -> Option<$name> {
                match id {
                    $($id => Some($name::$variant),)*
                    _ => None,
                }
            }

            pub fn id(self) -> u16 {
                self as u16
            }
        }
    };
}

ids! {
    /// An RPC method, the first field of a request frame.
    Method {
        OpaqueRegisterStart = 100,
        OpaqueRegisterFinish = 101,
        OpaqueLoginStart = 102,
        OpaqueLoginFinish = 103,
        Enqueue = 200,
        Fetch = 201,
        FetchWait = 202,
        Peek = 203,
        Ack = 204,
        BatchEnqueue = 205,
        RegisterDeliveryToken = 206,
        RevokeDeliveryToken = 207,
        SealedEnqueue = 208,
        UploadKeyPackage = 300,
        FetchKeyPackage = 301,
        UploadHybridKey = 302,
        FetchHybridKey = 303,
        FetchHybridKeys = 304,
        KeyPackageStatus = 305,
        AuthChallenge = 400,
        AuthProve = 401,
        ResolveUser = 500,
        ResolveIdentity = 501,
        GroupCommit = 600,
        BlobUploadStart = 700,
        BlobUploadChunk = 701,
        BlobUploadFinish = 702,
        BlobStatus = 703,
        BlobDownload = 704,
        BlobReceived = 705,
        Signal = 800,
        Report = 900,
        StoreRecoveryBundle = 1000,
        RecoveryStart = 1001,
        RecoveryFinish = 1002,
        DeleteRecoveryBundle = 1003,
        /// Key transparency (see `kt`): the latest signed tree head.
        LogHead = 1100,
        /// Inclusion proofs of a username's current entries.
        LogInclusion = 1101,
        LogConsistency = 1102,
        /// A range of entries, for an audit.
        LogEntries = 1103,
        /// The devices of one's own account.
        ListDevices = 1104,
        /// Revokes another device of one's own account (after OPAQUE login).
        RevokeDevice = 1105,
        ResolveRemoteUser = 1200,
        Undelivered = 1201,
        PeerResolveUser = 1250,
        PeerFetchKeyPackage = 1251,
        PeerDeliver = 1252,
        PeerGroupCommit = 1253,
    }
}

ids! {
    /// A server push, the first field of a push frame.
    Event {
        /// Payload `pb::NewMessageEvent`.
        NewMessage = 1,
        /// Payload `pb::SignalEvent`: typing or presence, never stored.
        Signal = 2,
    }
}

impl Method {
    /// Methods only a peer relay calls, over ALPN `qpc-fed`.
    pub fn peer_only(self) -> bool {
        matches!(
            self,
            Method::PeerResolveUser
                | Method::PeerFetchKeyPackage
                | Method::PeerDeliver
                | Method::PeerGroupCommit
        )
    }

    /// Methods a connection may call before it has proven an identity.
    pub fn allowed_anonymous(self) -> bool {
        matches!(
            self,
            Method::AuthChallenge
                | Method::AuthProve
                | Method::OpaqueRegisterStart
                | Method::OpaqueRegisterFinish
                | Method::OpaqueLoginStart
                | Method::OpaqueLoginFinish
                // Where registration is open; the relay decides.
                | Method::SealedEnqueue
                // Recovery is for a person who lost every device.
                | Method::RecoveryStart
                | Method::RecoveryFinish
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for m in Method::ALL {
            assert_eq!(Method::from_u16(m.id()), Some(*m));
        }
        for unknown in [
            0u16,
            99,
            104,
            199,
            209,
            299,
            306,
            402,
            502,
            599,
            601,
            699,
            706,
            801,
            899,
            901,
            999,
            1004,
            1099,
            1106,
            1199,
            1202,
            1249,
            1254,
            u16::MAX,
        ] {
            assert_eq!(Method::from_u16(unknown), None, "{unknown}");
        }
        assert_eq!(Event::from_u16(1), Some(Event::NewMessage));
        assert_eq!(Event::from_u16(2), Some(Event::Signal));
        assert_eq!(Event::from_u16(0), None);
    }
}
