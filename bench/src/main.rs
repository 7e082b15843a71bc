//! `qpc-bench`: runs the workloads against qpc-server and Mosquitto, A B A B,
//! prints the table and the `ratio NAME VALUE` lines, and the instruction
//! count per delivered message. `make bench` builds and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use argh::FromArgs;
use qpc_bench::callgrind::{self, Counter};
use qpc_bench::report;
use qpc_bench::servers::{self, Kind, Launch};
use qpc_bench::suite::{self, GroupWorkload, LatencyWorkload, Params};

/// qpc-bench: measures qpc-server side by side with Mosquitto on loopback.
#[derive(FromArgs)]
struct Flags {
    /// qpc-server binary (default: the one next to this program, else target/release/qpc-server)
    #[argh(option)]
    qpc_server: Option<PathBuf>,
    /// mosquitto binary (default /usr/sbin/mosquitto)
    #[argh(option, default = "PathBuf::from(\"/usr/sbin/mosquitto\")")]
    mosquitto: PathBuf,
    /// extra flag for qpc-server as NAME=VALUE or NAME, without the dashes, repeatable
    /// (e.g. --qpc-flag max-payload=262144)
    #[argh(option)]
    qpc_flag: Vec<String>,
    /// run qpc-server under this command, split at spaces (for profiling, e.g. "strace -c -f -o /tmp/s";
    /// RSS and CPU figures are then the wrapper's)
    #[argh(option)]
    qpc_wrapper: Option<String>,
    /// messages per store-and-forward run (default 5000)
    #[argh(option, default = "5000")]
    messages: usize,
    /// sending connections (default 10)
    #[argh(option, default = "10")]
    senders: usize,
    /// offline recipients (default 10)
    #[argh(option, default = "10")]
    recipients: usize,
    /// messages each sender keeps awaiting the relay's acknowledgement (default 8)
    #[argh(option, default = "8")]
    window: usize,
    /// messages in the latency run (default 2000)
    #[argh(option, default = "2000")]
    latency_messages: usize,
    /// offered rate of the latency run, messages per second (default 400)
    #[argh(option, default = "400.0")]
    latency_rate: f64,
    /// sender/recipient pairs in the latency run (default 10)
    #[argh(option, default = "10")]
    latency_pairs: usize,
    /// messages the sender sends to the group in the group run (default 1000)
    #[argh(option, default = "1000")]
    group_messages: usize,
    /// members of the group, sender included (default 10)
    #[argh(option, default = "10")]
    group_members: usize,
    /// idle connected clients (default 1000)
    #[argh(option, default = "1000")]
    idle_clients: usize,
    /// new connections in the handshake run (default 500)
    #[argh(option, default = "500")]
    handshakes: usize,
    /// handshakes in progress at once (default 4)
    #[argh(option, default = "4")]
    handshake_concurrency: usize,
    /// rounds of A B (default 2; 0 runs only the instruction count)
    #[argh(option, default = "2")]
    rounds: usize,
    /// messages for the instruction count (callgrind or --insn-wrapper), 0 to skip (default 500)
    #[argh(option, default = "500")]
    callgrind_messages: usize,
    /// payload bytes of each message of the instruction count's store-and-forward run (default 256)
    #[argh(option, default = "256")]
    callgrind_payload: usize,
    /// messages the callgrind run's sender keeps awaiting the relay's answer (default 8)
    #[argh(option, default = "8")]
    callgrind_window: usize,
    /// keep the instruction counter's output files in this directory (for callgrind_annotate)
    #[argh(option)]
    callgrind_keep: Option<PathBuf>,
    /// size in MiB of the file sent up and down through the relay, 0 to skip (default 64)
    #[argh(option, default = "64")]
    file_mib: u64,
    /// also count Mosquitto's instructions (default true; not with --insn-relay)
    #[argh(option, default = "true")]
    callgrind_mosquitto: bool,
    /// count instructions with the relay under this command instead of valgrind, split at
    /// spaces, `{log}` standing for the file it writes its total to (the last word of the
    /// last line starting with `total`, as qemu's libinsn plugin prints), e.g.
    /// "qemu-mipsel -cpu 24Kc -plugin /path/libinsn.so -d plugin -D {log}"
    #[argh(option)]
    insn_wrapper: Option<String>,
    /// the relay binary started under --insn-wrapper (a router build); flags are still probed
    /// on --qpc-server, so build both from the same source (default: --qpc-server itself)
    #[argh(option)]
    insn_relay: Option<PathBuf>,
}

fn default_server() -> PathBuf {
    let beside = std::env::current_exe().ok().map(|p| p.with_file_name("qpc-server"));
    match beside {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("target/release/qpc-server"),
    }
}

fn main() -> ExitCode {
    let flags: Flags = argh::from_env();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qpc-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qpc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> qpc_bench::Result<()> {
    let qpc_server = flags.qpc_server.clone().unwrap_or_else(default_server);
    if !qpc_server.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p qpc-server)",
            qpc_server.display()
        )
        .into());
    }
    if !flags.mosquitto.exists() {
        return Err(format!("{} not found: apt-get install mosquitto", flags.mosquitto.display()).into());
    }
    let mut qpc_flags = servers::qpc_limit_flags(&qpc_server);
    for flag in &flags.qpc_flag {
        let flag = flag.trim_start_matches('-');
        match flag.split_once('=') {
            Some((name, value)) => qpc_flags.extend([format!("--{name}"), value.to_string()]),
            None => qpc_flags.push(format!("--{flag}")),
        }
    }
    let counter = match (flags.insn_wrapper.clone(), flags.insn_relay.clone()) {
        (Some(command), relay) => Counter::Wrapper { command, relay },
        (None, None) => Counter::Callgrind,
        (None, Some(_)) => return Err("--insn-relay needs --insn-wrapper".into()),
    };
    let launch = Launch {
        qpc_server: qpc_server.clone(),
        qpc_run: None,
        qpc_flags,
        db_key: "qpc-bench database key".into(),
        mosquitto: flags.mosquitto.clone(),
        mqtt_max_inflight: flags.window.max(20) as u32,
        wrapper: flags.qpc_wrapper.iter().flat_map(|w| w.split_whitespace()).map(String::from).collect(),
        mosquitto_wrapper: Vec::new(),
        start_timeout: Duration::from_secs(30),
    };
    let params = Params {
        messages: flags.messages,
        senders: flags.senders,
        recipients: flags.recipients,
        window: flags.window,
        small_payload: 256,
        large_payload: 4096,
        latency: LatencyWorkload {
            messages: flags.latency_messages,
            pairs: flags.latency_pairs,
            rate: flags.latency_rate,
            payload_size: 256,
        },
        group: GroupWorkload {
            messages: flags.group_messages,
            members: flags.group_members,
            payload_size: 256,
            window: flags.window,
        },
        idle_clients: flags.idle_clients,
        idle_settle: Duration::from_secs(2),
        handshakes: flags.handshakes,
        handshake_concurrency: flags.handshake_concurrency,
        rounds: flags.rounds,
    };
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    println!("qpc-bench: {} vs {}", qpc_server.display(), flags.mosquitto.display());
    println!("qpc-server flags: {}", launch.qpc_flags.join(" "));
    println!(
        "workload: {} msgs per store-and-forward run, {} senders x {} in flight, {} offline recipients; \
         latency {} msgs at {}/s over {} pairs; {} idle clients; {} handshakes {} at a time; {} rounds A B",
        params.messages,
        params.senders,
        params.window,
        params.recipients,
        params.latency.messages,
        params.latency.rate,
        params.latency.pairs,
        params.idle_clients,
        params.handshakes,
        params.handshake_concurrency,
        params.rounds
    );
    let comparison = suite::run(&launch, &params, &progress).await?;
    if params.rounds > 0 {
        println!();
        print!("{}", report::table(&comparison, &params));
    }

    if flags.callgrind_messages > 0 {
        if counter.available() {
            println!();
            let mut kinds = vec![Kind::Qpc];
            if flags.callgrind_mosquitto && flags.insn_relay.is_none() {
                kinds.push(Kind::Mosquitto);
            }
            let group = GroupWorkload { messages: flags.callgrind_messages / 5, ..params.group.clone() };
            let mut per = Vec::new();
            for kind in kinds {
                progress(&format!(
                    "{}: {}, {} messages of {} B",
                    kind.name(),
                    counter.name(),
                    flags.callgrind_messages,
                    flags.callgrind_payload
                ));
                let keep = flags.callgrind_keep.as_deref();
                let count = callgrind::count(
                    kind,
                    &launch,
                    &counter,
                    flags.callgrind_messages,
                    flags.callgrind_payload,
                    flags.callgrind_window,
                    keep,
                )
                .await?;
                println!(
                    "instructions_per_msg {} {:.0} ({}: {} with {} messages, {} without; 1 sender ({} in flight), 1 recipient, {} B)",
                    kind.name(),
                    count.per_message(),
                    counter.name(),
                    count.loaded,
                    count.messages,
                    count.base,
                    flags.callgrind_window,
                    flags.callgrind_payload
                );
                progress(&format!(
                    "{}: {}, group of {}, {} messages",
                    kind.name(),
                    counter.name(),
                    group.members,
                    group.messages
                ));
                let g = callgrind::count_group(kind, &launch, &counter, &group, keep).await?;
                println!(
                    "instructions_per_group_msg {} {:.0} ({}: {} with {} messages to {} members, {} without; per delivered message)",
                    kind.name(),
                    g.per_message(),
                    counter.name(),
                    g.loaded,
                    group.messages,
                    group.members - 1,
                    g.base
                );
                per.push((count.per_message(), g.per_message()));
            }
            if let [(q, qg), (m, mg)] = per[..] {
                println!("ratio instructions_per_msg {:.3}", q / m);
                println!("ratio instructions_per_group_msg {:.3}", qg / mg);
            }
        } else {
            println!("\ninstruction count skipped: valgrind not installed (apt-get install valgrind)");
        }
    }
    if flags.file_mib > 0 {
        progress(&format!("qpc: a {} MiB file up and down", flags.file_mib));
        let server = servers::Server::start(Kind::Qpc, &launch)?;
        let figures = qpc_bench::files::transfer(&server, flags.file_mib).await;
        server.stop(Duration::from_secs(20))?;
        println!();
        print!("{}", qpc_bench::files::report(&figures?));
    }
    if params.rounds > 0 {
        println!();
        print!("{}", report::ratio_lines(&comparison));
    }
    Ok(())
}
