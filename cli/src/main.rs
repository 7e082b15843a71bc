//! qpc: the qpc chat client. Each subcommand is one process that loads the
//! state file, talks to the relay, and saves the state again, as in the
//! walkthrough of README.md.
#![forbid(unsafe_code)]

mod commands;
mod files;
mod output;
mod render;
mod repl;
mod transparency;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

/// qpc: end-to-end encrypted group chat through a qpc relay.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    RegisterState(RegisterState),
    CreateGroup(CreateGroup),
    Invite(Invite),
    Remove(Remove),
    Update(Update),
    Join(Join),
    Decline(Decline),
    Invitations(Invitations),
    RotateToken(RotateToken),
    Send(Send),
    SendFile(SendFile),
    SaveFile(SaveFile),
    Recv(Recv),
    FetchKey(FetchKey),
    Whoami(Whoami),
    DemoGroup(DemoGroup),
    RegisterUser(RegisterUser),
    Login(Login),
    Report(Report),
    RecoverySetup(RecoverySetup),
    Recover(Recover),
    Repl(Repl),
    Chat(Chat),
    Audit(Audit),
    Devices(Devices),
    RevokeDevice(RevokeDevice),
    Verify(Verify),
}

/// Where the state file and the relay are; every subcommand takes these.
pub struct Common {
    pub state: PathBuf,
    pub server: String,
    pub ca_cert: PathBuf,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Declares a subcommand with the common --state, --server and --ca-cert
/// options and its own fields.
macro_rules! subcommand {
    ($(#[$m:meta])* $name:ident = $cmd:literal { $($(#[$fm:meta])* $field:ident : $ty:ident $(<$inner:ident>)?,)* }) => {
        $(#[$m])*
        #[derive(FromArgs)]
        #[argh(subcommand, name = $cmd)]
        pub struct $name {
            /// state file holding the identity and groups (QPC_STATE; default qpc-state.bin)
            #[argh(option)]
            state: Option<PathBuf>,
            /// relay address HOST:PORT (QPC_SERVER; default 127.0.0.1:7000)
            #[argh(option)]
            server: Option<String>,
            /// the relay's DER certificate, the only one trusted (QPC_CA_CERT; default data/server-cert.der)
            #[argh(option)]
            ca_cert: Option<PathBuf>,
            /// account name; without --state the state file is qpc-<username>.bin
            #[argh(option)]
            username: Option<String>,
            /// password of the account and its state file (QPC_PASSWORD; else asked on the terminal)
            #[argh(option)]
            password: Option<String>,
            // Types pass as identifiers so argh's derive still sees `bool` and `Option`.
            $($(#[$fm])* pub $field: $ty $(<$inner>)?,)*
        }

        impl $name {
            pub fn common(&self) -> Common {
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let by_name = self.username.as_ref().map(|u| PathBuf::from(format!("qpc-{u}.bin")));
                Common {
                    username: self.username.clone(),
                    password: self.password.clone(),
                    state: self
                        .state
                        .clone()
                        .or_else(|| env("QPC_STATE").map(PathBuf::from))
                        .or(by_name)
                        .unwrap_or_else(|| "qpc-state.bin".into()),
                    server: self.server.clone().or_else(|| env("QPC_SERVER")).unwrap_or_else(|| "127.0.0.1:7000".into()),
                    ca_cert: self.ca_cert.clone().or_else(|| env("QPC_CA_CERT").map(PathBuf::from)).unwrap_or_else(|| "data/server-cert.der".into()),
                }
            }
        }
    };
}

subcommand! {
    /// create (or load) an identity and upload a fresh KeyPackage
    RegisterState = "register-state" {}
}

subcommand! {
    /// create an MLS group (local; epoch 0)
    CreateGroup = "create-group" {
        /// name of the new group
        #[argh(option)]
        group_id: String,
        /// pq (X-Wing: X25519 + ML-KEM-768, the default) or classic (for devices of an older qpc)
        #[argh(option)]
        suite: Option<String>,
    }
}

subcommand! {
    /// add a peer to a group: fetch its KeyPackage, commit, queue the Welcome
    Invite = "invite" {
        /// the peer: a username or an identity key (64 hex digits)
        #[argh(positional)]
        peer: Option<String>,
        /// the peer's identity key (64 hex digits)
        #[argh(option)]
        peer_key: Option<String>,
        /// the group (default: your only group)
        #[argh(option)]
        group_id: Option<String>,
    }
}

subcommand! {
    /// remove a member (every device of theirs) from a group
    Remove = "remove" {
        /// the member: a username or an identity key (64 hex digits)
        #[argh(positional)]
        peer: Option<String>,
        /// the member's identity key (64 hex digits)
        #[argh(option)]
        peer_key: Option<String>,
        /// the group (default: the group shared with the member, or your only group)
        #[argh(option)]
        group_id: Option<String>,
    }
}

subcommand! {
    /// rotate your own key in a group (heals it after a compromise)
    Update = "update" {
        /// the group (default: your only group)
        #[argh(option)]
        group_id: Option<String>,
    }
}

subcommand! {
    /// read the queue and accept an invitation (the only one, or --group-id)
    Join = "join" {
        /// the group whose invitation to accept
        #[argh(option)]
        group_id: Option<String>,
    }
}

subcommand! {
    /// decline a pending invitation (the group removes you; nothing is left behind)
    Decline = "decline" {
        /// the group whose invitation to decline
        #[argh(positional)]
        group: String,
    }
}

subcommand! {
    /// list the pending invitations
    Invitations = "invitations" {}
}

subcommand! {
    /// replace this device's sealed-sender delivery token (the old one is revoked)
    RotateToken = "rotate-token" {}
}

subcommand! {
    /// encrypt a message for a group and queue it for a member (or all)
    Send = "send" {
        /// the recipient's identity key (64 hex digits)
        #[argh(option)]
        peer_key: Option<String>,
        /// the recipient: a username or an identity key
        #[argh(option)]
        to: Option<String>,
        /// send to every other member of the group
        #[argh(switch)]
        all: bool,
        /// the message text
        #[argh(option)]
        msg: String,
        /// the group (default: the group shared with --peer-key, or your only group)
        #[argh(option)]
        group_id: Option<String>,
    }
}

subcommand! {
    /// encrypt a file, upload it to the relay and announce it to a conversation (run again to resume)
    SendFile = "send-file" {
        /// the recipient: a username or an identity key
        #[argh(option)]
        to: Option<String>,
        /// the group (default: the group shared with --to, or your only group)
        #[argh(option)]
        group_id: Option<String>,
        /// the file to send
        #[argh(positional)]
        path: PathBuf,
    }
}

subcommand! {
    /// download, decrypt and check the file of received message N (as `qpc recv` numbers them)
    SaveFile = "save-file" {
        /// the message number
        #[argh(positional)]
        number: u64,
        /// where to save it (default: its name, in this directory; a directory: its name in there)
        #[argh(positional)]
        path: Option<PathBuf>,
    }
}

subcommand! {
    /// receive and decrypt queued messages
    Recv = "recv" {
        /// keep waiting for new messages until interrupted
        #[argh(switch)]
        stream: bool,
        /// one JSON object per line (see the README), for scripts
        #[argh(switch)]
        json: bool,
    }
}

subcommand! {
    /// fetch (and consume) one KeyPackage of a peer
    FetchKey = "fetch-key" {
        /// the peer: a username or an identity key (64 hex digits)
        #[argh(positional)]
        peer: Option<String>,
        /// the peer's identity key (64 hex digits)
        #[argh(option)]
        peer_key: Option<String>,
    }
}

subcommand! {
    /// show this identity and its groups
    Whoami = "whoami" {}
}

subcommand! {
    /// run Alice and Bob in-process through the relay
    DemoGroup = "demo-group" {}
}

subcommand! {
    /// create an account (OPAQUE: the password never leaves this machine) and its encrypted state
    RegisterUser = "register-user" {
        /// registration token, when the relay asks for one
        #[argh(option)]
        token: Option<String>,
    }
}

subcommand! {
    /// log in to an account (binding this device's identity key)
    Login = "login" {}
}

subcommand! {
    /// report an account to the relay's owner, with an optional reason
    Report = "report" {
        /// the account to report
        #[argh(positional)]
        user: String,
        /// why (at most 500 bytes; the relay never sees your messages)
        #[argh(positional)]
        reason: Vec<String>,
    }
}

subcommand! {
    /// store an encrypted recovery bundle on the relay and print its recovery code (once)
    RecoverySetup = "recovery-setup" {}
}

subcommand! {
    /// bring an account back on a new device with its recovery code (QPC_RECOVERY_CODE, stdin or asked)
    Recover = "recover" {}
}

subcommand! {
    /// sign in (registering on first use) and chat in an interactive session; /help lists the commands
    Repl = "repl" {}
}

subcommand! {
    /// one conversation for scripts: lines on stdin are sent to it, incoming messages printed
    Chat = "chat" {
        /// the conversation: a username (a DM) or #group
        #[argh(option)]
        to: String,
        /// read and write one JSON object per line (see the README), for scripts
        #[argh(switch)]
        json: bool,
    }
}

subcommand! {
    /// check the relay's whole key transparency log end to end
    Audit = "audit" {}
}

subcommand! {
    /// list the devices of your account (key, added, last seen)
    Devices = "devices" {}
}

subcommand! {
    /// revoke another device of your account (needs the password) and remove it from your groups
    RevokeDevice = "revoke-device" {
        /// the device's identity key (64 hex digits, from qpc devices)
        #[argh(positional)]
        key: String,
    }
}

subcommand! {
    /// show the safety number with a person, to compare face to face, and mark them verified
    Verify = "verify" {
        /// their username
        #[argh(positional)]
        peer: String,
    }
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::RegisterState(c) => commands::register_state(&c.common()).await,
            Command::CreateGroup(c) => commands::create_group(&c.common(), &c.group_id, c.suite.as_deref()),
            Command::Invite(c) => {
                commands::invite(
                    &c.common(),
                    commands::peer_arg(c.peer, c.peer_key)?.as_deref(),
                    c.group_id.as_deref(),
                )
                .await
            }
            Command::Remove(c) => {
                commands::remove(
                    &c.common(),
                    commands::peer_arg(c.peer, c.peer_key)?.as_deref(),
                    c.group_id.as_deref(),
                )
                .await
            }
            Command::Update(c) => commands::update(&c.common(), c.group_id.as_deref()).await,
            Command::Join(c) => commands::join(&c.common(), c.group_id.as_deref()).await,
            Command::Decline(c) => commands::decline(&c.common(), &c.group).await,
            Command::Invitations(c) => commands::invitations(&c.common()).await,
            Command::RotateToken(c) => commands::rotate_token(&c.common()).await,
            Command::Send(c) => {
                commands::send(
                    &c.common(),
                    commands::peer_arg(c.to, c.peer_key)?.as_deref(),
                    c.all,
                    &c.msg,
                    c.group_id.as_deref(),
                )
                .await
            }
            Command::SendFile(c) => {
                files::send_file(&c.common(), c.to.as_deref(), &c.path, c.group_id.as_deref()).await
            }
            Command::SaveFile(c) => files::save_file(&c.common(), c.number, c.path.as_deref()).await,
            Command::Recv(c) => commands::recv(&c.common(), c.stream, c.json).await,
            Command::FetchKey(c) => {
                commands::fetch_key(&c.common(), commands::peer_arg(c.peer, c.peer_key)?.as_deref()).await
            }
            Command::Whoami(c) => commands::whoami(&c.common()),
            Command::DemoGroup(c) => commands::demo_group(&c.common()).await,
            Command::RegisterUser(c) => {
                commands::register_user(&c.common(), c.token.as_deref().unwrap_or("")).await
            }
            Command::Login(c) => commands::login(&c.common()).await,
            Command::Report(c) => commands::report(&c.common(), &c.user, &c.reason).await,
            Command::RecoverySetup(c) => commands::recovery_setup(&c.common()).await,
            Command::Recover(c) => commands::recover(&c.common()).await,
            Command::Audit(c) => transparency::audit(&c.common()).await,
            Command::Devices(c) => transparency::devices(&c.common()).await,
            Command::RevokeDevice(c) => transparency::revoke_device(&c.common(), &c.key).await,
            Command::Verify(c) => transparency::verify(&c.common(), &c.peer).await,
            Command::Repl(c) => repl::run(&c.common(), None, false).await,
            Command::Chat(c) => repl::run(&c.common(), Some(&c.to), c.json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
