//! `ambit-pod`: a process of a test-bed pod.
//!
//! Its first act, before any thread exists, is to join the given cgroup and
//! then setns(2) into the given network namespace. Then it runs the echo
//! server (`serve`), the echo client (`client`) or another program (`exec`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ambit-pod", about = "Process of an Ambit test-bed pod")]
struct Cli {
    /// cgroup v2 directory to join first.
    #[arg(long, global = true)]
    cgroup: Option<PathBuf>,
    /// Named network namespace (/var/run/netns/NAME) to enter after joining the cgroup.
    #[arg(long, global = true)]
    netns: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo server on 8080 (HTTP), 8443 (TLS), 9090 (TCP), 7070 (gRPC).
    Serve {
        /// Pod name reported by the echo.
        #[arg(long)]
        pod: String,
        /// Namespace reported by the echo.
        #[arg(long)]
        namespace: String,
    },
    /// Make requests and print one JSON report on stdout.
    Client(ambit_e2e::echo_client::ClientOpts),
    /// Misbehave against a server (slowloris, HTTP/2 floods) and print one JSON report.
    Abuse(ambit_e2e::abuse_client::AbuseOpts),
    /// Exec a program after joining.
    Exec {
        /// Program and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = ambit_e2e::join::join(cli.cgroup.as_deref(), cli.netns.as_deref()) {
        eprintln!("ambit-pod: {e:#}");
        std::process::exit(125);
    }
    match cli.command {
        Cmd::Exec { command } => {
            let args: Vec<std::ffi::CString> = command
                .iter()
                .map(|a| std::ffi::CString::new(a.as_bytes()).expect("no NUL in arguments"))
                .collect();
            let err = nix::unistd::execvp(&args[0], &args).unwrap_err();
            eprintln!("ambit-pod: exec {}: {err}", command[0]);
            std::process::exit(127);
        }
        Cmd::Serve { pod, namespace } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let id = ambit_e2e::echo_server::EchoIdentity { pod, namespace };
            if let Err(e) = rt.block_on(ambit_e2e::echo_server::serve(id)) {
                eprintln!("ambit-pod serve: {e:#}");
                std::process::exit(1);
            }
        }
        Cmd::Abuse(opts) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let report = rt.block_on(ambit_e2e::abuse_client::run(opts));
            println!("{}", serde_json::to_string(&report).expect("serializable report"));
        }
        Cmd::Client(opts) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let out = rt.block_on(ambit_e2e::echo_client::run(opts));
            println!("{}", serde_json::to_string(&out).expect("serializable report"));
        }
    }
}
