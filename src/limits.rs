//! Every bound and timeout tlsfront applies, with its default and the reason for it.
//!
//! Config keys override the timeouts; the buffer bounds are fixed because they
//! protect memory, not policy.

use std::ops::RangeInclusive;
use std::time::Duration;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets; extensions (SIZE,
/// DSN, SMTPUTF8 addresses) push real lines past that, so allow a few times more.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// Default longest reply line accepted from the backend (RFC 5321 says 512).
pub const MAX_REPLY_LINE: usize = 4096;
/// Characters of a backend reply quoted in a log line or an error message.
pub const REPLY_SUMMARY_CHARS: usize = 200;
/// Default bound of a whole (multi-line) backend reply; an EHLO reply with 30 keywords fits easily.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// `smtp.max_line_length` and `backend.max_reply_line`: RFC 5321 §4.5.3.1.4-5
/// require 512 octets; a "line" past 64 KiB is a memory grab, not SMTP.
pub const LINE_LENGTH_RANGE: RangeInclusive<usize> = 512..=65_536;
/// `backend.max_reply_size`: a multi-line EHLO reply needs a few KiB; 16 MiB
/// is far past any real reply and still bounded per session.
pub const REPLY_SIZE_RANGE: RangeInclusive<usize> = 4096..=16 * 1024 * 1024;
/// Read size for message content: large enough to amortise TLS records, small
/// enough that thousands of sessions in DATA stay bounded.
pub const DATA_CHUNK: usize = 32 * 1024;
/// Bytes read from the client socket at once during DATA (read-ahead). rustls
/// asks for 4 KiB to one record (~16 KiB) per read; a bulk transfer then costs
/// one receive syscall (and a window update) per 64 KiB instead.
pub const DATA_READ_AHEAD: usize = 64 * 1024;
/// Command input read at once, through a buffer on the stack, so a session
/// waiting for its next command holds no read buffer at all.
pub const COMMAND_READ: usize = 4096;
/// Room made in the read buffer before each read of message content, when
/// less is free (the first read of a message; later ones are `DATA_CHUNK`).
pub const DATA_READ_MIN: usize = 4096;
/// A HELO/EHLO argument: a domain (253) or an address literal; 255 is the
/// longest either can be (RFC 5321 §4.5.3.1.2).
pub const MAX_HELO_NAME: usize = 255;
/// Closing a client connection (TLS close_notify, FIN) is not worth waiting for.
pub const CLIENT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Memory all sessions in DATA may hold for message buffers together (each
/// takes `DATA_CHUNK + DATA_READ_AHEAD`): 10 000 sessions sending at once
/// would otherwise need ~1 GB. Beyond it DATA gets `451 4.3.1`, retried later.
/// `smtp.message_memory_mib` overrides it.
pub const DATA_MEMORY_BUDGET: usize = 256 * 1024 * 1024;
/// Upper bound of `smtp.message_memory_mib` (64 GiB): a typo, not a budget.
pub const MAX_MESSAGE_MEMORY_MIB: usize = 64 * 1024;
/// ClientHello bytes held before the handshake (one is normally < 2 KiB even with
/// a post-quantum key share; TLS allows a handshake message to span records).
pub const MAX_CLIENT_HELLO: usize = 32 * 1024;
/// TLS records a ClientHello may span: clients send it in one (two past
/// 16 KiB), tools that split it to slip past filters in a handful; hundreds
/// of tiny records only make the server work.
pub const MAX_HELLO_RECORDS: usize = 64;
/// Control characters (NUL...) held at the start of a message line to see
/// whether a `.` follows; real text has none or one (ISO-2022-JP's ESC), and
/// a longer run gets its line dot-stuffed at once instead of held.
pub const MAX_HELD_CONTROLS: usize = 64;
/// Commands read ahead of processing: bounds what a pipelining client can park in memory.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Longest duration any config key accepts: no timeout, interval or lifetime
/// needs more than a week, and `Instant + Duration` stays far from overflowing.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(7 * 86_400);
/// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for a command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2.6: 3 minutes for each block of message content... applied per read.
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(180);
/// A handshake needs two round trips; a minute covers any real sender.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting to a backend on the same host or LAN is instant when it is up.
pub const DEFAULT_BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5321 §4.5.3.2.1: the client waits 5 minutes for the initial 220.
pub const DEFAULT_BACKEND_GREETING_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2: the client side waits 5 minutes for MAIL/RCPT replies...
pub const DEFAULT_BACKEND_REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// ... and 10 minutes for the reply to the end of data (§4.5.3.2.6).
pub const DEFAULT_BACKEND_DATA_TIMEOUT: Duration = Duration::from_secs(600);
/// Replies held back for pipelined commands, at most (then they are sent).
pub const HELD_REPLIES: usize = 16 * 1024;
/// An idle backend connection is kept this long for the next session
/// (Postfix's smtp client caches its connections for 2 s by default too).
pub const DEFAULT_BACKEND_REUSE_IDLE: Duration = Duration::from_secs(2);
/// Longest `backend.reuse_idle_time`: longer would hold the backend's
/// processes (Sendmail forks one per connection) for nothing.
pub const MAX_BACKEND_REUSE_IDLE: Duration = Duration::from_secs(60);
/// Client sessions one backend connection serves before it is closed.
pub const DEFAULT_BACKEND_REUSE_MAX_SESSIONS: u32 = 100;
/// `backend.reuse_max_sessions`: at least the session that opened it; past
/// 100 000 the number is a typo, not a policy.
pub const BACKEND_REUSE_MAX_SESSIONS_RANGE: RangeInclusive<u32> = 1..=100_000;
/// Idle backend connections kept at most (the oldest go first).
pub const MAX_IDLE_BACKEND_CONNECTIONS: usize = 64;
/// Backend connections open at once (in use and kept), by default: Postfix's
/// `default_process_limit`, the smtpd processes a stock Postfix runs.
pub const DEFAULT_BACKEND_MAX_CONNECTIONS: usize = 100;
/// `backend.max_connections`: one at least; past 100 000 it is a typo.
pub const BACKEND_MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = 1..=100_000;
/// Extension verbs relayed to the backend by default (`smtp.relay_verbs`):
/// ETRN asks the backend to flush a queue and leaves no session state.
pub const DEFAULT_RELAY_VERBS: &[&str] = &["ETRN"];
/// A session that outlives this is a stuck or hostile peer.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// How often the backend's EHLO keywords are re-learned between sessions.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(600);
/// On SIGTERM, sessions in flight get this long before they are ended.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Saying QUIT at the end of a backend (or probed) session: the goodbye is a
/// courtesy, never worth holding a task for.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Writing a reply to a client that does not read is bounded too.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on concurrent sessions (each costs a few tens of KiB).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Postfix's smtpd_client_connection_count_limit default: a busy legitimate
/// sender rarely needs more, a spam run from one host is slowed down.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 50;
/// RFC 5321 §4.5.3.1.8 asks servers to accept at least 100; Postfix allows 1000.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// Bad commands before `421 4.7.0` and close (`smtp.max_errors`): Postfix's
/// `smtpd_hard_error_limit` is 20 too.
pub const DEFAULT_MAX_ERRORS: u32 = 20;
/// No greeting delay by default (`smtp.greeting_delay`): only input already
/// there at accept time is caught, and no sender waits.
pub const DEFAULT_GREETING_DELAY: Duration = Duration::ZERO;
/// Longest `smtp.greeting_delay`: Postfix's postscreen waits 6 s; RFC 5321
/// clients wait 5 minutes for the greeting, but each second here is paid by
/// every sender.
pub const MAX_GREETING_DELAY: Duration = Duration::from_secs(30);
/// Longest SMTP verb the command parser takes (the longest real one,
/// STARTTLS, has 8); longer is junk, so `smtp.relay_verbs` cannot list one.
pub const MAX_RELAY_VERB: usize = 16;
/// RFC 1035 §2.3.4: a host name is at most 253 characters written out (255
/// octets on the wire), each label at most 63.
pub const MAX_HOSTNAME: usize = 253;
pub const MAX_HOSTNAME_LABEL: usize = 63;
/// `server.host_id`: a host name or a short tag; it goes into every record.
pub const MAX_HOST_ID: usize = 64;
/// Refusals (421 at the cap) being written at once; beyond this a refused
/// connection is closed without a reply, so a flood cannot grow tasks unboundedly.
pub const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// How long a refusal may take to write.
pub const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A trusted balancer sends its PROXY header at once.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a PROXY v2 header after its 16 fixed ones: addresses take at
/// most 216 (AF_UNIX), a balancer's TLVs a few dozen; more is not a balancer.
pub const MAX_PROXY_V2_PAYLOAD: usize = 512;
/// Connections the kernel queues on a listener until they are accepted.
/// Past saturation tlsfront accepts only as fast as it serves, so the
/// overload waits here; a full queue drops SYNs, which senders retry only
/// after a second or more. Linux caps it at `net.core.somaxconn` (4096 by
/// default since 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;
/// ClientHellos per worker thread that may wait for a turn at the costly
/// step of the handshake before the listeners stop accepting: a few
/// milliseconds of handshakes (one takes ~0.2 ms of CPU with ECDSA).
pub const HANDSHAKES_WAITING: usize = 16;
/// After a failed accept (EMFILE: out of file descriptors) the loop waits,
/// doubling from the first to the second: no busy loop, and accepting
/// resumes within a second once descriptors are free.
pub const ACCEPT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(1));

/// Entries kept of each ClientHello list in a record (suites, groups, ...):
/// above the longest real offer (OpenSSL's `ALL`, Postfix's `medium` grade:
/// 140 suites), far below what a hostile 32 KiB hello can hold.
pub const MAX_RECORD_LIST: usize = 200;
/// Bytes (as JSON) kept of each string in a record: a domain name is at most
/// 255 octets (RFC 1035 §2.3.4); HELO names and error texts are shorter.
pub const MAX_RECORD_STRING: usize = 255;
/// Bytes of one record line: a failed handshake with the biggest real
/// ClientHello takes about 4 KiB; a hostile one made 186 KiB before this cap.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Records waiting for the writer thread; beyond this they are dropped and
/// counted, so a stalled disk never holds sessions or grows memory without
/// bound (at most 64 MiB even if each record were at `MAX_RECORD_BYTES`).
pub const MAX_QUEUED_RECORDS: usize = 8 * 1024;
/// The writer thread's pause after each batch of records: they gather
/// meanwhile and go out in one write (at 1 000 sessions/s, 20 per write
/// instead of one wake-up per session). The queue above holds 400 ms of
/// records even at 20 000 sessions/s, so the pause never drops one.
pub const RECORD_BATCH_WAIT: Duration = Duration::from_millis(20);
/// At most one warning about dropped records per this interval (with the count).
pub const RECORD_DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// A certificate with less than this left is a warning: `check`'s
/// `expires_soon`, and a log line at start and on every reload (certbot
/// renews at 30 days left: by 21, renewal has been failing for over a week,
/// with three weeks left to fix it).
pub const CERT_EXPIRY_WARNING: Duration = Duration::from_secs(21 * 86_400);
/// RSA keys under this many bits are refused: what modern senders refuse
/// ("ee key too small", OpenSSL's security level 2).
pub const MIN_RSA_BITS: usize = 2048;

/// `tlsfront check`: each connect and each backend reply, so a dead backend
/// gives a verdict in seconds rather than after `reply_timeout` (5 minutes).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// `tlsfront check`: most bytes read of the backend's TLS first flight (a
/// long certificate chain is ~10 KiB).
pub const MAX_PROBE_BYTES: usize = 64 * 1024;

/// Metrics endpoint: a scrape request is one short GET; more is not a scraper.
pub const MAX_METRICS_REQUEST: usize = 8 * 1024;
/// Metrics endpoint: reading the request head; a scraper sends it at once, so
/// clients trickling bytes to hold a slot are dropped quickly.
pub const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Metrics endpoint: reading the request and writing the answer, together.
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(10);
/// Metrics endpoint: scrapes served at once (Prometheus sends one at a time).
pub const MAX_METRICS_CONNECTIONS: usize = 16;

/// Daemon: after a certificate file changes, wait this long before reloading;
/// certbot writes the key and the chain one after the other.
pub const CERT_SETTLE_DELAY: Duration = Duration::from_secs(1);
/// Daemon: STATUS= updates to systemd when it set no watchdog (with one, the
/// pings go at half its interval): often enough for `systemctl status`.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// Daemon: tasks still running when the server has returned (after the
/// shutdown grace) get this long before the process ends.
pub const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// ACME: the CA asked when `acme.directory` is not set (Let's Encrypt, production).
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// ACME: where the account, keys and certificates live when
/// `acme.state_directory` is not set and systemd gave no `$STATE_DIRECTORY`
/// (the unit's `StateDirectory=tlsfront`).
pub const DEFAULT_STATE_DIRECTORY: &str = "/var/lib/tlsfront";
/// ACME: the HTTP-01 challenge listener by default, both families: the CA
/// validates over IPv6 when the name has an AAAA record.
pub const DEFAULT_CHALLENGE_LISTEN: &[&str] = &["0.0.0.0:80", "[::]:80"];
/// ACME: longest `acme.renew_before`; Let's Encrypt's certificates live 90
/// days, and renewing with 60 left already renews every month.
pub const MAX_RENEW_BEFORE: Duration = Duration::from_secs(60 * 86_400);
/// ACME: the first wait after a failed order (`acme.retry_initial`); it
/// doubles after each failure. Let's Encrypt allows 5 failed validations per
/// name an hour: 10 minutes keeps well inside.
pub const DEFAULT_ACME_RETRY_INITIAL: Duration = Duration::from_secs(600);
/// ACME: the doubling stops here; a certificate with days left still gets
/// several tries a day.
pub const ACME_RETRY_MAX: Duration = Duration::from_secs(12 * 3600);
/// ACME: waiting for the CA to validate an order, and then to issue it.
pub const ACME_ORDER_TIMEOUT: Duration = Duration::from_secs(180);
/// ACME: one HTTP request to the CA (directory, order, certificate): the CA
/// answers in seconds; a minute covers a slow one without hanging a renewal.
pub const ACME_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP-01 listener: a request head is one short GET from the CA.
pub const MAX_CHALLENGE_REQUEST: usize = 8 * 1024;
/// HTTP-01 listener: reading the request and writing the answer, together.
pub const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP-01 listener: requests served at once (a CA validates from a handful
/// of vantage points; the rest is scanners on port 80).
pub const MAX_CHALLENGE_CONNECTIONS: usize = 64;
/// DANE: how often the daemon looks up the next key's TLSA records: at most
/// this, at least every half TTL (so "visible for two TTLs" is measured to
/// within a quarter of it).
pub const MAX_TLSA_POLL_INTERVAL: Duration = Duration::from_secs(600);
/// DANE: the shortest poll, whatever the TTL (a TTL of 0 or 1 s in tests).
pub const MIN_TLSA_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// DNS: one lookup (TLSA, TXT, addresses) with the DNSSEC chain it needs.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// MX hosts `probe DOMAIN` probes: real domains list a handful; a list of
/// dozens would keep the probe connecting for many minutes.
pub const MAX_MX_HOSTS: usize = 10;
/// MTA-STS: `max_age` of the served policy by default: one week (RFC 8461
/// §3.2 suggests weeks or more once the policy is stable).
pub const DEFAULT_MTA_STS_MAX_AGE: u64 = 7 * 86_400;
/// MTA-STS: RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year).
pub const MAX_MTA_STS_MAX_AGE: u64 = 31_557_600;
/// MTA-STS: the policy listener by default (HTTPS on 443, both families).
pub const DEFAULT_MTA_STS_LISTEN: &[&str] = &["0.0.0.0:443", "[::]:443"];
/// MTA-STS: RFC 8461 §3.3: senders SHOULD refuse policies over 64 KiB.
pub const MAX_MTA_STS_POLICY: usize = 64 * 1024;
/// MTA-STS: fetching the policy (connect, TLS, request and answer together).
pub const MTA_STS_FETCH_TIMEOUT: Duration = Duration::from_secs(20);
