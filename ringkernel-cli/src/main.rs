//! `ringkernel`: the RingKernel command line.
//!
//! ```text
//! ringkernel audit verify <dir> --key <hex|@file> [--anchor <hash[:count]> | --anchors-from-syslog <file>] [--json] [--progress]
//! ringkernel audit tail <dir> [-n N] [--json]
//! ringkernel audit heads <dir> --key <hex|@file> [--json]
//! ringkernel report fleet <report.json>... [--format json|markdown] [-o file]
//! ringkernel keystore init|inspect|rotate <state-dir> (--passphrase-env VAR | --key-file PATH
//!     | --pkcs11-module PATH (--token-label LABEL | --slot ID) [--key-label LABEL]
//!       (--pin-env VAR | --pin-file PATH)) [--json]
//! ringkernel completions <bash|zsh|fish|powershell|elvish>
//! ```
//!
//! Exit status:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success; for `audit verify`: verified, `closed` or `open` |
//! | 1 | tampered: a record, segment, checkpoint or head does not verify (`audit verify`, `audit heads`) |
//! | 2 | usage or I/O error, or any other failure (a wrong key-encryption key, a bad report) |
//! | 3 | truncated: part of the log is missing relative to its signed head or the anchor (`audit verify`) |
//! | 4 | no log: the directory holds no signed head and no segments (`audit verify`, `audit tail`, `audit heads`) |
//!
//! Secrets never travel in argv: a keystore passphrase is read from the environment
//! variable `--passphrase-env` names, a token PIN from `--pin-env` or `--pin-file`, and
//! no command prints one.

mod audit;
mod cli;
mod keystore;
mod report;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{AuditCommand, Cli, Command, ReportCommand};

/// Exit status 2 with a message: usage, I/O and other errors.
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// What a command returns: its exit status, or a failure (exit 2).
pub(crate) type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(&args),
        Command::Audit(AuditCommand::Tail(args)) => audit::tail(&args),
        Command::Audit(AuditCommand::Heads(args)) => audit::heads(&args),
        Command::Report(ReportCommand::Fleet(args)) => report::fleet(&args),
        Command::Report(ReportCommand::Snapshot(args)) => report::snapshot(&args),
        Command::Keystore(cmd) => keystore::run(&cmd),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ringkernel",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    outcome.unwrap_or_else(|Failure(why)| {
        eprintln!("ringkernel: {why}");
        ExitCode::from(2)
    })
}
