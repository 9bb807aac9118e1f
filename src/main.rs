//! The `tlsfront` command line: arguments in, a call into the library, an
//! exit status out. What each command does lives in the library (`run` in
//! `proxy::daemon`, the others in `tools`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tlsfront::config::{ConfigError, DEFAULT_CONFIG_PATH, Overrides, Settings};
use tlsfront::proxy::backend::tls as backend_tls;
use tlsfront::proxy::daemon::{self, RunError};
use tlsfront::tools::check;
use tlsfront::tools::report::{self, Options, Report, input, verdict};

#[derive(Parser)]
#[command(
    name = "tlsfront",
    version,
    about = "Inline SMTP STARTTLS front for legacy MTAs",
    long_about = "tlsfront sits on port 25/587/465 in front of a legacy MTA whose own STARTTLS \
                  modern senders refuse (1024-bit RSA keys, 1024-bit DH). It terminates TLS \
                  itself (TLS 1.2/1.3, ECDHE only), relays the SMTP dialogue to the backend, \
                  and writes one JSON record per connection with the TLS outcome."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy in the foreground until SIGTERM or SIGINT.
    #[command(
        after_help = "Default configuration file: /etc/tlsfront/tlsfront.toml (every key is \
        described in the example conf/tlsfront.toml and docs/configuration.md).\n\n\
        Example without a file:\n  tlsfront run --listen 0.0.0.0:25 --backend 127.0.0.1:10025 \\\n    \
        --cert fullchain.pem --key key.pem --hostname mx.example.com --records records.jsonl\n\n\
        Check a configuration before (re)starting: tlsfront check --config FILE"
    )]
    Run(RunArgs),
    /// Summarise record files: TLS share, versions, failures and who has them,
    /// what a stricter policy would break, and whether the legacy path is retired.
    #[command(
        long_about = "Summarise tlsfront's record files (one JSON object per connection), of one \
        host or a fleet: sessions and the share with TLS; every session's kind (probe, plaintext \
        sender, modern TLS, or a failed handshake, split by whether the legacy MTA would have \
        failed too); TLS versions, suites, groups, SNI names and certificate key types, and what \
        clients offered; failures by reason; plaintext and top senders; sessions per day and per \
        host; what requiring TLS or a stricter policy (--simulate) would break, with the share of \
        mail; the legacy MTA's own log (--legacy-log) for sessions that bypass tlsfront; and the \
        verdict \"Legacy path retired: YES\" or \"NO\" with every exception listed, with the \
        time range and the rules it was judged by.",
        after_help = "FILES may be plain or gzip-compressed (detected by content, so rotated \
        files like records.jsonl.2.gz work); \"-\" reads standard input. Without FILES, the \
        file named by records.path in the configuration is read (rotated files are not: \
        name them, e.g. with a glob). Records of several hosts merge; a record seen twice \
        (same host and session) counts once.\n\n\
        The verdict is YES when no sender needs the legacy TLS path: probes (connect/EHLO/QUIT \
        only) and plaintext senders never block; a failed handshake blocks only when the legacy \
        MTA, as described by --legacy-tls and --legacy-kx, would have completed it (a TLS \
        1.0-only or RSA-key-exchange-only sender: the regression to see); with --legacy-log, any \
        session that reached the legacy MTA from an address other than --tlsfront-source blocks. \
        Full reference: docs/report.md.\n\n\
        Lines that are not records (not JSON, no valid \"ts\" or \"tls\") are counted and \
        skipped, never fatal; the report says how many and where the first one is.\n\n\
        Exit status: 0 report printed (whatever the verdict), 1 a file cannot be read, \
        2 bad arguments or configuration.\n\n\
        Examples:\n  \
        tlsfront report                       # records.path of /etc/tlsfront/tlsfront.toml\n  \
        tlsfront report --since 7d /var/log/tlsfront/records.jsonl*\n  \
        tlsfront report --since 2026-11-01 --until 2026-12-01 --html nov.html mx1.jsonl mx2.jsonl\n  \
        tlsfront report --legacy-log /var/log/mail.log --tlsfront-source 10.0.0.5 records.jsonl\n  \
        tlsfront report --simulate tls13-only --simulate policy.toml --json | jq .simulations\n  \
        zcat old.jsonl.gz | tlsfront report -"
    )]
    Report(ReportArgs),
    /// Check the configuration, certificates and backend without starting the proxy.
    #[command(
        long_about = "Checks what `tlsfront run` would start with the same flags, without \
        starting it (like `nginx -t` or `postfix check`):\n\
        - the configuration loads and validates (a backend that tlsfront's own listener serves \
        is refused);\n\
        - a dry run: each listener is bound for a moment as `run` binds it (a busy port names \
        the process holding it), the record file is opened as `run` opens it;\n\
        - every certificate: who may read the key (group/world-readable is a warning; as root, \
        whether the service's user could read the files, see --service-user), key type and size \
        (RSA under 2048 bits is an error), the key \
        matches the certificate, the chain is complete and in order (leaf, then intermediates), \
        validity and days to expiry, every host name (server.hostname, server.names: the MX \
        names) is covered, the SNI names map sanely;\n\
        - the backend: greeting, EHLO keywords, whether it offers XCLIENT, and a probe of its \
        own STARTTLS (a TLS 1.2 ClientHello, never completed) telling whether modern senders \
        would refuse it and why (RSA key bits, DH group bits, protocol version);\n\
        - the open-relay guard: from the address (--source-address) and with the identity `run` \
        uses, MAIL FROM:<> and RCPT TO:<relay-test@tlsfront-RANDOM.example.net> (then RSET; no \
        DATA): a backend that accepts would relay for every client of tlsfront \
        (backend_open_relay, an error naming the fix).\n\n\
        - with [acme]: the certificates in the state directory (dates, names) and whether the \
        last renewal failed (the daemon's status file);\n\
        - with --dane: the _25._tcp.NAME TLSA records DNS publishes (DNSSEC validated by \
        tlsfront itself) against the keys in service and the next keys ACME keeps ready, each \
        with the `_25._tcp.NAME. IN TLSA 3 1 1 ...` line to publish;\n\
        - with --mta-sts DOMAIN: the _mta-sts TXT record and the policy at \
        https://mta-sts.DOMAIN/.well-known/mta-sts.txt, every mx: pattern against this host's \
        names, and whether the certificate served for each admitted name satisfies a sender that \
        verifies.\n\n\
        Each finding is one line: `ok`, `warning` or `error`, what it is about, the message, \
        and a stable code in brackets. A weak backend STARTTLS is a warning: tlsfront hides it.",
        after_help = "Exit status: 0 no errors (warnings allowed), 1 at least one error, \
        2 the configuration does not load.\n\n\
        Examples:\n  tlsfront check --config /etc/tlsfront/tlsfront.toml\n  \
        tlsfront check --config /etc/tlsfront/tlsfront.toml --json | jq '.findings[] | select(.level != \"ok\")'\n  \
        tlsfront check --no-backend --cert fullchain.pem --key key.pem --hostname mx.example.com \\\n    \
        --listen 0.0.0.0:25 --backend 127.0.0.1:10025\n  \
        tlsfront check --no-backend --dane --mta-sts example.com   # what to publish in DNS\n\n\
        Enabling ACME, DANE and MTA-STS on a real host: docs/certificates.md."
    )]
    Check(CheckArgs),
    /// Look at a mail server's TLS the way a modern sender does (the readable
    /// `openssl s_client -starttls smtp`).
    #[command(
        long_about = "Connects to HOST[:PORT] as a sending MTA would: reads the greeting, says EHLO \
        (the keywords are shown), sends STARTTLS (or starts TLS at once with --implicit), then does a \
        modern TLS handshake (rustls: TLS 1.2/1.3, ECDHE, AEAD, the settings of current senders). \
        It reports the protocol, suite and key exchange group, the full chain as presented (subject, \
        SANs, issuer, key type and bits, expiry and days left), whether the chain verifies against \
        the system roots (plus --cafile), whether the certificate covers HOST and --name, and, on a \
        second connection, whether the same certificate comes back with SNI flipped.\n\n\
        When the modern handshake fails (1024-bit RSA key, DHE-only suites with a weak group, TLS 1.1 \
        or older), a second connection sends a broad TLS 1.2 ClientHello (never completed) and reports \
        what the server offers and why a modern sender refuses it, in the words senders log: \
        \"ee key too small\", \"dh key too small\", \"unsupported protocol\".\n\n\
        With --dane, the _25._tcp TLSA records of HOST (or --name) are judged against the chain \
        presented; with --mta-sts DOMAIN, DOMAIN's MTA-STS record and policy against this host \
        and its certificate: the same findings, codes and words as `tlsfront check`.",
        after_help = "Exit status: 0 a modern sender would deliver over TLS (handshake done, chain \
        trusted or not checked, every name covered), 1 it would fail (no STARTTLS, handshake \
        impossible, untrusted chain, name not covered), 2 cannot connect, not SMTP, or bad arguments. \
        For a mail domain: the worst of its mail hosts; 1 for a null MX, 2 when the domain does \
        not exist or the MX lookup fails.\n\n\
        A mail domain (a DNS name without a port, as HOST) is looked up as senders do: its MX \
        records (through --resolver, DNSSEC status shown), then each MX host in order of \
        preference, at the addresses the same resolver gives, on port 25 (or --port), with the MX \
        name as SNI and as the name the certificate must cover. No MX records: the domain itself \
        (implicit MX, RFC 5321); a null MX (`MX 0 .`, RFC 7505): the domain accepts no mail. \
        --no-mx probes the name itself; HOST:PORT, an IP address and --implicit are never looked \
        up.\n\n\
        SNI is --name if given, else HOST when it is a DNS name.\n\n\
        Examples:\n  \
        tlsfront probe example.com                     # each MX host of example.com, port 25\n  \
        tlsfront probe mx.example.com --no-mx          # that host, port 25, STARTTLS\n  \
        tlsfront probe 127.0.0.1:10025 --name mx.example.com   # the legacy MTA behind tlsfront\n  \
        tlsfront probe mx.example.com --implicit       # port 465\n  \
        tlsfront probe example.com --json | jq '.hosts[].problems'\n  \
        tlsfront probe mx.example.com --no-mx --dane --mta-sts example.com   # TLSA and MTA-STS, as check says"
    )]
    Probe(ProbeArgs),
    /// Write the man pages or the shell completions into a directory (for
    /// packaging: packaging/build-deb.sh). Hidden from --help.
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// The configuration file and the flags that override it: shared by `run`
/// and `check`, so `check` sees exactly what `run` would start.
#[derive(Clone, Args)]
struct ConfigArgs {
    /// Configuration file (TOML). Without this flag the default path is used
    /// if it exists; flags below override the file's values.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// STARTTLS listener address, e.g. 0.0.0.0:25 or [::]:587 (repeatable;
    /// replaces the file's listeners).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// Implicit-TLS listener address, e.g. 0.0.0.0:465 (repeatable).
    #[arg(long, value_name = "ADDR")]
    implicit_listen: Vec<String>,
    /// The legacy MTA, e.g. 127.0.0.1:10025.
    #[arg(long, value_name = "ADDR")]
    backend: Option<String>,
    /// Local address to connect to the backend from (backend.source_address),
    /// e.g. 127.0.0.2: one the backend does not trust as a relay client.
    #[arg(long, value_name = "IP")]
    source_address: Option<String>,
    /// Certificate chain PEM (leaf first, then intermediates); needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key PEM (PKCS#8, SEC1 or PKCS#1) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Host name used in the greeting and EHLO reply (and a self-signed certificate).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Record file: one JSON object per connection is appended to it.
    #[arg(long, value_name = "FILE")]
    records: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads and validates the settings; on failure, the error and where the
    /// configuration came from (for messages).
    fn load(self) -> Result<(Settings, String), (ConfigError, String)> {
        let explicit = self.config.is_some();
        let path = self
            .config
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let source = if explicit || path.exists() {
            path.display().to_string()
        } else {
            "command line".to_string()
        };
        let overrides = Overrides {
            listen: self.listen,
            implicit_listen: self.implicit_listen,
            backend: self.backend,
            source_address: self.source_address,
            cert: self.cert,
            key: self.key,
            hostname: self.hostname,
            records: self.records,
        };
        // The backend's CA file is read where the backend is built; reading
        // it here too keeps a bad one a configuration error (exit 2, check's
        // config_invalid, a refused reload) like any other key.
        let loaded = Settings::load(&path, explicit, &overrides).and_then(|s| {
            backend_tls::client_config(&s.backend).map_err(|e| e.in_config(&source))?;
            Ok(s)
        });
        match loaded {
            Ok(s) => Ok((s, source)),
            Err(e) => Err((e, source)),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Log filter, e.g. "info", "debug", "tlsfront=debug" (RUST_LOG also works).
    #[arg(
        long,
        value_name = "FILTER",
        default_value = "info",
        env = "TLSFRONT_LOG"
    )]
    log: String,
}

#[derive(Args)]
struct ReportArgs {
    /// Record files, plain or gzip ("-" for standard input; a quoted pattern
    /// like 'records.jsonl*' is expanded). Several hosts' files merge; a record
    /// seen twice (same host and session) counts once. Default: records.path
    /// from the configuration file.
    #[arg(value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Only sessions that ended at or after this: a duration before now (30m,
    /// 24h, 7d) or a date or time (2026-11-01, 2026-11-01T08:00, RFC 3339);
    /// without an offset, UTC.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only sessions that ended before this (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Print one JSON object (stable snake_case keys, listed in docs/report.md) instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the report as one self-contained HTML page (inline SVG charts, no script).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The legacy MTA's syslog (Sendmail or Postfix; plain or gzip; repeatable):
    /// every session that reached it from an address other than tlsfront's is
    /// a direct session, and keeps the verdict from YES.
    #[arg(long = "legacy-log", value_name = "FILE")]
    legacy_log: Vec<PathBuf>,
    /// The address(es) tlsfront connects to the legacy MTA from (ADDR or
    /// ADDR/LEN, repeatable) [default: 127.0.0.0/8 and ::1].
    #[arg(long = "tlsfront-source", value_name = "ADDR", value_parser = parse_net)]
    tlsfront_source: Vec<(std::net::IpAddr, u8)>,
    /// TLS versions the legacy MTA accepted, e.g. 1.0,1.1,1.2: a failed
    /// handshake it would have completed blocks the verdict [default: 1.0,1.1,1.2].
    #[arg(long = "legacy-tls", value_name = "LIST", value_delimiter = ',', value_parser = verdict::version_arg)]
    legacy_tls: Vec<String>,
    /// Key exchanges the legacy MTA accepted: ecdhe, dhe, rsa [default: ecdhe,dhe,rsa].
    #[arg(long = "legacy-kx", value_name = "LIST", value_delimiter = ',', value_parser = verdict::kx_arg)]
    legacy_kx: Vec<String>,
    /// A stricter policy to judge (repeatable): tls13-only, ecdsa-only,
    /// pq-required, or a TOML policy file [default: the three built-in ones].
    #[arg(long, value_name = "POLICY")]
    simulate: Vec<String>,
    /// Configuration file whose records.path is read when no FILES are given
    /// [default: /etc/tlsfront/tlsfront.toml].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn parse_net(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    report::legacy_log::parse_net(s)
}

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    match tlsfront::config::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err("expected a duration like 30m, 24h or 7d".to_string()),
    }
}

/// A wait bound: capped like the configuration's durations, so adding it to
/// an `Instant` cannot overflow.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let max = tlsfront::limits::MAX_CONFIG_DURATION;
    match parse_since(s)? {
        d if d > max => Err(format!("at most {} days", max.as_secs() / 86_400)),
        d => Ok(d),
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print one JSON object (ok, errors, warnings, findings, backend) instead of lines.
    #[arg(long)]
    json: bool,
    /// Do not contact the backend (configuration and certificates only).
    #[arg(long)]
    no_backend: bool,
    /// The user (name or UID) `run` runs as: run as root, check judges the certificate and
    /// key files by whether this user could read them [default: the unit's
    /// DynamicUser, an unprivileged user in no group].
    #[arg(long, value_name = "USER")]
    service_user: Option<String>,
    /// Extra trusted roots (PEM) for --mta-sts, beside the system's.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    #[command(flatten)]
    published: PublishedArgs,
}

/// What DNS publishes about a host (DANE, MTA-STS): shared by check and probe.
#[derive(Args)]
struct PublishedArgs {
    /// Compare the _25._tcp.NAME TLSA records with the keys (DNSSEC status shown).
    #[arg(long)]
    dane: bool,
    /// Check DOMAIN's MTA-STS TXT record and policy against this host (repeatable).
    #[arg(long, value_name = "DOMAIN")]
    mta_sts: Vec<String>,
    /// DNS resolver for --dane, --mta-sts and probe's MX lookup, IP or
    /// IP:PORT [default: [dane] resolver, else /etc/resolv.conf].
    #[arg(long, value_name = "ADDR")]
    resolver: Option<String>,
    /// DNSKEY records trusted instead of the root's key (a private or test zone).
    #[arg(long, value_name = "FILE")]
    trust_anchor: Option<PathBuf>,
}

impl PublishedArgs {
    /// The DNS settings the flags give, over `base` (the config's `[dane]`).
    fn dns(
        &self,
        base: Option<&tlsfront::config::DnsSettings>,
    ) -> Result<Option<tlsfront::config::DnsSettings>, String> {
        if self.resolver.is_none() && self.trust_anchor.is_none() {
            return Ok(base.cloned());
        }
        let resolver = match &self.resolver {
            None => base.and_then(|b| b.resolver),
            Some(s) => Some(
                tlsfront::dns::parse_resolver(s)
                    .ok_or_else(|| format!("--resolver {s:?}: expected IP or IP:PORT"))?,
            ),
        };
        Ok(Some(tlsfront::config::DnsSettings {
            resolver,
            trust_anchor: self
                .trust_anchor
                .clone()
                .or_else(|| base.and_then(|b| b.trust_anchor.clone())),
        }))
    }
}

#[derive(Args)]
struct ProbeArgs {
    /// The server: HOST, HOST:PORT, [IPv6]:PORT (port 25, or 465 with --implicit).
    #[arg(value_name = "HOST[:PORT]")]
    target: String,
    #[command(flatten)]
    published: PublishedArgs,
    /// Name the certificate must cover (and the SNI sent); HOST is checked too
    /// when it is a DNS name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// TLS from the first byte (port 465), no STARTTLS.
    #[arg(long)]
    implicit: bool,
    /// First connection without SNI (the second one then sends it).
    #[arg(long)]
    no_sni: bool,
    /// Print one JSON object (stable keys, listed in docs/probe.md) instead of text.
    #[arg(long)]
    json: bool,
    /// Bound on the connect and on each wait for the server, e.g. 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    timeout: std::time::Duration,
    /// Name to say in EHLO [default: this host's name, or tlsfront-probe.invalid].
    #[arg(long, value_name = "NAME")]
    ehlo: Option<String>,
    /// Extra trusted roots (PEM), added to /etc/ssl/certs/ca-certificates.crt.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// Probe HOST itself, never its MX hosts.
    #[arg(long)]
    no_mx: bool,
    /// Port to connect to, on HOST or on each MX host [default: 25, 465
    /// with --implicit]; not with HOST:PORT.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
}

#[derive(Args)]
struct GenerateArgs {
    /// What to write.
    what: Generated,
    /// Directory to write into (created if missing).
    dir: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Generated {
    /// tlsfront.1 and one page per command (tlsfront-run.1, ...).
    Man,
    /// tlsfront.bash, _tlsfront (zsh) and tlsfront.fish.
    Completions,
}

// mimalloc rather than glibc's malloc: 4 % less CPU per session, measured
// with both builds serving at the same moment (integration/ab.py); glibc's
// bins slow down as many sessions allocate and free at once. It costs about
// 12 MiB more at start and 0.8 KiB more per idle session (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Report(args) => report(args),
        Cmd::Check(args) => check(args),
        Cmd::Probe(args) => probe(args),
        Cmd::Generate(args) => generate(args),
    }
}

/// Man pages and completions come from the same clap definitions as
/// `--help`, so they cannot drift from the command line.
fn generate(args: GenerateArgs) -> ExitCode {
    let written = std::fs::create_dir_all(&args.dir).and_then(|()| {
        let cmd = documented();
        match args.what {
            Generated::Man => clap_mangen::generate_to(cmd, &args.dir),
            Generated::Completions => {
                use clap_complete::Shell;
                for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                    clap_complete::generate_to(shell, &mut cmd.clone(), "tlsfront", &args.dir)?;
                }
                Ok(())
            }
        }
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tlsfront: cannot write into {}: {e}", args.dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The command line as documented: `Cli` without its hidden commands (the
/// completion generators list hidden subcommands, clap has no way to remove
/// one, so the top level is rebuilt from its visible parts).
fn documented() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("tlsfront")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    if let Some(about) = full.get_long_about() {
        cmd = cmd.long_about(about.clone());
    }
    cmd
}

fn probe(args: ProbeArgs) -> ExitCode {
    let (host, mut port) = match tlsfront::tools::probe::parse_target(&args.target, args.implicit) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tlsfront: {e}");
            return ExitCode::from(2);
        }
    };
    let mail_domain =
        !args.no_mx && !args.implicit && tlsfront::tools::probe::is_mail_domain(&args.target);
    if let Some(p) = args.port {
        if tlsfront::tools::probe::names_a_port(&args.target) {
            eprintln!(
                "tlsfront: --port {p} and a port in {:?}: give one",
                args.target
            );
            return ExitCode::from(2);
        }
        port = p;
    }
    if mail_domain && args.name.is_some() {
        eprintln!(
            "tlsfront: --name is for one host: each MX host of a mail domain is checked against \
             its own name (--no-mx to probe {host} itself)"
        );
        return ExitCode::from(2);
    }
    let dns = match args.published.dns(None) {
        Err(e) => {
            eprintln!("tlsfront: {e}");
            return ExitCode::from(2);
        }
        Ok(dns) => dns,
    };
    let published =
        (args.published.dane || !args.published.mta_sts.is_empty()).then(|| check::Options {
            dane: args.published.dane,
            mta_sts: args.published.mta_sts.clone(),
            dns: dns.clone(),
            system_roots: PathBuf::from(tlsfront::tools::probe::SYSTEM_ROOTS),
            cafile: args.cafile.clone(),
            policy_port: 443,
            ..check::Options::default()
        });
    let options = tlsfront::tools::probe::Options {
        published,
        host,
        port,
        name: args.name,
        implicit: args.implicit,
        no_sni: args.no_sni,
        timeout: args.timeout,
        ehlo: args
            .ehlo
            .unwrap_or_else(tlsfront::tools::probe::default_ehlo_name),
        cafile: args.cafile,
        system_roots: PathBuf::from(tlsfront::tools::probe::SYSTEM_ROOTS),
        addresses: Vec::new(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tlsfront: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let (text, error, exit) = if mail_domain {
        let d = runtime.block_on(tlsfront::tools::probe::run_domain(
            &options.host,
            &options,
            &dns.unwrap_or_default(),
        ));
        let text = if args.json {
            d.to_json() + "\n"
        } else {
            d.render()
        };
        (text, d.error, d.exit)
    } else {
        let report = runtime.block_on(tlsfront::tools::probe::run(&options));
        let text = if args.json {
            report.to_json() + "\n"
        } else {
            report.render()
        };
        (text, report.error, report.exit)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if let (Some(e), false) = (&error, args.json) {
        eprintln!("tlsfront: {}", tlsfront::escape::text(e));
    }
    ExitCode::from(exit)
}

fn check(args: CheckArgs) -> ExitCode {
    let print = |report: &check::Report| {
        if args.json {
            println!("{}", report.to_json());
        } else {
            print!("{}", report.render());
        }
    };
    let (settings, source) = match args.config.load() {
        Ok(x) => x,
        Err((e, source)) => {
            if args.json {
                print(&check::Report::config_failure(&source, e.to_string()));
            } else {
                eprintln!("tlsfront: configuration error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tlsfront: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dns = match args.published.dns(settings.dane.as_ref().map(|d| &d.dns)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tlsfront: {e}");
            return ExitCode::from(2);
        }
    };
    let options = check::Options {
        backend: !args.no_backend,
        service_user: args.service_user,
        dane: args.published.dane,
        mta_sts: args.published.mta_sts.clone(),
        dns,
        system_roots: PathBuf::from(tlsfront::tools::probe::SYSTEM_ROOTS),
        cafile: args.cafile.clone(),
        policy_port: 443,
    };
    let report = runtime.block_on(check::run(&settings, &source, options));
    print(&report);
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report(args: ReportArgs) -> ExitCode {
    let usage = |message: String| {
        eprintln!("tlsfront: {message}");
        ExitCode::from(2)
    };
    let files = if args.files.is_empty() {
        match default_record_file(args.config) {
            Ok(path) => vec![path],
            Err(message) => return usage(message),
        }
    } else {
        args.files
    };
    let now = jiff::Timestamp::now();
    let when = |arg: &Option<String>, name: &str| -> Result<Option<jiff::Timestamp>, String> {
        arg.as_deref()
            .map(|s| report::range::parse_when(s, now).map_err(|e| format!("--{name}: {e}")))
            .transpose()
    };
    let window = match (when(&args.since, "since"), when(&args.until, "until")) {
        (Ok(since), Ok(until)) => report::range::Window { since, until },
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    if let (Some(s), Some(u)) = (window.since, window.until)
        && s >= u
    {
        return usage(format!("--since {s} is not before --until {u}"));
    }
    let mut options = Options::with_window(window);
    if !args.legacy_tls.is_empty() {
        options.legacy.versions = args.legacy_tls;
    }
    if !args.legacy_kx.is_empty() {
        options.legacy.kx = args.legacy_kx;
    }
    if !args.simulate.is_empty() {
        options.simulate.clear();
        for p in &args.simulate {
            match report::simulate::Policy::load(p) {
                Ok(policy) => options.simulate.push(policy),
                Err(e) => return usage(format!("--simulate: {e}")),
            }
        }
    }
    let mut report = Report::new(options);
    if !args.legacy_log.is_empty() {
        let sources = if args.tlsfront_source.is_empty() {
            report::legacy_log::default_sources()
        } else {
            args.tlsfront_source
        };
        let mut log =
            report::legacy_log::LegacyLog::new(window, sources, now, jiff::tz::TimeZone::system());
        let paths = match input::expand(&args.legacy_log) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("tlsfront: --legacy-log: {e}");
                return ExitCode::FAILURE;
            }
        };
        for path in &paths {
            if let Err(e) = input::read_path(&mut log, path) {
                eprintln!("tlsfront: --legacy-log: {e}");
                return ExitCode::FAILURE;
            }
        }
        report = report.with_legacy_log(log);
    }
    let files = match input::expand(&files) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tlsfront: {e}");
            return ExitCode::FAILURE;
        }
    };
    for file in &files {
        if let Err(e) = input::read_path(&mut report, file) {
            eprintln!("tlsfront: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, report.render_html())
    {
        eprintln!("tlsfront: --html {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let text = if args.json {
        report.render_json()
    } else {
        report.render_text()
    };
    // A reader that stops early (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

/// The record file named in the configuration, for `report` without FILES.
fn default_record_file(config: Option<PathBuf>) -> Result<PathBuf, String> {
    let explicit = config.is_some();
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    if !explicit && !path.exists() {
        return Err(format!(
            "no FILES given and no configuration at {} to take records.path from; \
             name the record files, e.g. tlsfront report /var/log/tlsfront/records.jsonl*",
            path.display()
        ));
    }
    let settings = Settings::load(&path, true, &Overrides::default())
        .map_err(|e| format!("configuration error: {e}"))?;
    settings.records.ok_or_else(|| {
        format!(
            "{}: no records.path configured; name the record files to report on",
            path.display()
        )
    })
}

fn run(args: RunArgs) -> ExitCode {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config_args = args.config.clone();
    let settings = match args.config.load() {
        Ok((s, _)) => s,
        Err((e, _)) => {
            eprintln!("tlsfront: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // A reload reads the same file with the same flags again.
    let load = Box::new(move || {
        config_args
            .clone()
            .load()
            .map(|(s, _)| s)
            .map_err(|(e, _)| e)
    });
    match daemon::run(settings, load) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tlsfront: {e}");
            match e {
                RunError::Records(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
