//! The command-line grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ringkernel_core::security::audit::Anchor;

/// The RingKernel command line: audit logs, fleet reports, keystores.
#[derive(Debug, Parser)]
#[command(name = "ringkernel", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Audit logs: verify, read the last records, show the signed head.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compliance reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The production keystore of a state directory.
    #[command(subcommand)]
    Keystore(KeystoreCommand),
    /// Prints a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verifies a (copied) audit log with the public key alone.
    ///
    /// Exit status: 0 verified (closed or open), 1 tampered, 2 usage or I/O error,
    /// 3 truncated, 4 no log.
    Verify(VerifyArgs),
    /// Prints the last records of a log (not verified: use `verify` for that).
    Tail(TailArgs),
    /// Prints the signed head, verified with the key, and its anchor: what to ship off
    /// the machine.
    Heads(HeadsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// The audit public key: 64 hex digits, or `@file` holding them.
    #[arg(long, value_name = "HEX|@FILE")]
    pub(crate) key: String,
    /// A head shipped off the machine earlier (`<last-hash>[:<records>]`, or
    /// `-:<records>`): a log that falls short of it was rolled back.
    #[arg(long, value_name = "HASH[:COUNT]", value_parser = parse_anchor, allow_hyphen_values = true)]
    pub(crate) anchor: Option<Anchor>,
    /// A syslog collector's file holding the heads this log shipped (`AuditConfig::syslog`):
    /// the newest one whose signature verifies with `--key` is the anchor.
    #[arg(long, value_name = "FILE", conflicts_with = "anchor")]
    pub(crate) anchors_from_syslog: Option<PathBuf>,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Progress on stderr even when stderr is not a terminal.
    #[arg(long)]
    pub(crate) progress: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// How many records.
    #[arg(short = 'n', long = "lines", default_value_t = 20, value_name = "N")]
    pub(crate) count: usize,
    /// The records as JSON lines (as stored).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HeadsArgs {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// The audit public key: 64 hex digits, or `@file` holding them.
    #[arg(long, value_name = "HEX|@FILE")]
    pub(crate) key: String,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Merges runtimes' JSON compliance reports into one fleet report per standard.
    Fleet(FleetArgs),
    /// Renders a report from a saved security snapshot (`SecuritySnapshot::to_json`),
    /// as the runtime would have at the moment the snapshot was taken.
    Snapshot(SnapshotArgs),
}

/// A built-in standard, by its slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StandardArg {
    /// SOC 2.
    Soc2,
    /// GDPR.
    Gdpr,
    /// HIPAA.
    Hipaa,
    /// PCI DSS.
    PciDss,
    /// ISO/IEC 27001:2022.
    Iso27001,
    /// FedRAMP (NIST SP 800-53 rev5).
    Fedramp,
    /// NIST CSF 2.0.
    NistCsf,
}

/// Export format of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// JSON.
    Json,
    /// Markdown.
    Markdown,
    /// One self-contained HTML file.
    Html,
    /// PDF.
    Pdf,
    /// OSCAL 1.1 assessment results.
    Oscal,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The saved snapshot.
    #[arg(value_name = "SNAPSHOT.json")]
    pub(crate) snapshot: PathBuf,
    /// The standard to report on.
    #[arg(long, value_enum)]
    pub(crate) standard: StandardArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Markdown)]
    pub(crate) format: FormatArg,
    /// The organization named in the report.
    #[arg(long, value_name = "NAME")]
    pub(crate) organization: Option<String>,
    /// Writes to this file instead of stdout (required for PDF).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// Output format of fleet reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FleetFormat {
    /// A JSON array of fleet reports.
    Json,
    /// Markdown, one section per standard.
    Markdown,
}

#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// Reports' JSON exports.
    #[arg(required = true, value_name = "REPORT.json")]
    pub(crate) reports: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FleetFormat::Markdown)]
    pub(crate) format: FleetFormat,
    /// Writes to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeystoreCommand {
    /// Creates a keystore with fresh keys; fails if the directory holds one.
    Init(KeystoreArgs),
    /// Prints what the keystore holds, never a secret.
    Inspect(KeystoreArgs),
    /// Starts a new key epoch and writes it to the keystore.
    Rotate(KeystoreArgs),
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("kek").required(true).args(["passphrase_env", "key_file", "pkcs11_module"]))]
#[command(group = clap::ArgGroup::new("token").args(["token_label", "slot"]))]
#[command(group = clap::ArgGroup::new("pin").args(["pin_env", "pin_file"]))]
pub(crate) struct KeystoreArgs {
    /// The state directory holding `keystore.json`.
    pub(crate) dir: PathBuf,
    /// Name of the environment variable holding the passphrase (never argv).
    #[arg(long, value_name = "VAR")]
    pub(crate) passphrase_env: Option<String>,
    /// A key file: 32 or more random bytes, mode 0600.
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// The key-encryption key is in a PKCS#11 token: the vendor's module (shared
    /// library), e.g. /usr/lib/softhsm/libsofthsm2.so; needs --token-label or --slot,
    /// and --pin-env or --pin-file. `init` creates the key in the token when it holds
    /// none.
    #[arg(long, value_name = "PATH")]
    pub(crate) pkcs11_module: Option<PathBuf>,
    /// The token, by label (with --pkcs11-module).
    #[arg(long, value_name = "LABEL", requires = "pkcs11_module")]
    pub(crate) token_label: Option<String>,
    /// The token, by slot id (with --pkcs11-module).
    #[arg(long, value_name = "ID", requires = "pkcs11_module")]
    pub(crate) slot: Option<u64>,
    /// The label of the AES-256 key in the token.
    #[arg(
        long,
        value_name = "LABEL",
        default_value = "ringkernel-kek",
        requires = "pkcs11_module"
    )]
    pub(crate) key_label: String,
    /// Name of the environment variable holding the token's user PIN (never argv).
    #[arg(long, value_name = "VAR", requires = "pkcs11_module")]
    pub(crate) pin_env: Option<String>,
    /// A file holding the token's user PIN, mode 0600.
    #[arg(long, value_name = "PATH", requires = "pkcs11_module")]
    pub(crate) pin_file: Option<PathBuf>,
    /// JSON on stdout instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_anchor(text: &str) -> Result<Anchor, String> {
    text.parse::<Anchor>().map_err(|e| e.to_string())
}
